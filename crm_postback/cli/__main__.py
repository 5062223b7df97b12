from crm_postback.cli.entry import main

main()
