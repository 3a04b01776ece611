from hearo.cli import app

app()
