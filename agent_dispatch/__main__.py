from agent_dispatch.launch import main

main()
