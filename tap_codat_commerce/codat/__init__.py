"""The Codat side: HTTP, retries, paging and the Codat operations shared by the tap and the setup
command. Nothing here imports singer-sdk, the streams or the setup command."""
