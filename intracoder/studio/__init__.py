"""`intracoder studio`: a local web app on top of the pipeline (config, jobs, workspace,
server, static/ the page). It calls the same functions and commands as the CLI."""
