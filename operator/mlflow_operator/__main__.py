from mlflow_operator.cli import main

main()
