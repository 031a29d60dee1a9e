from mtpb.cli import main

main()
