from learndir.cli.main import app

app()
