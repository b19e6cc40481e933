from dermaseg_app.cli import main

raise SystemExit(main())
