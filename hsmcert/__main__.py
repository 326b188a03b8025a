from hsmcert.cli.main import main

main()
