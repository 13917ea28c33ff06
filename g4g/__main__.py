from g4g.cli import main

raise SystemExit(main())
