from tweetsim.cli import main

raise SystemExit(main())
