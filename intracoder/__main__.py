from intracoder.cli import main

raise SystemExit(main())
