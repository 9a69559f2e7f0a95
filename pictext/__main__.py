from pictext.cli import main

raise SystemExit(main())
