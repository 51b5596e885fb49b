"""Developer scripts: the local Airflow stack behind `make demo`, `make up` and `make down`."""
