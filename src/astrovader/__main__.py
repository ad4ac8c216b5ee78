from astrovader.cli import main

main()
