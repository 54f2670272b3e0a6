from dealscore.cli import main

raise SystemExit(main())
