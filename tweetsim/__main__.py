from tweetsim.apps.cli import main

raise SystemExit(main())
