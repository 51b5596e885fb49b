"""The Messages tab: what a run sent and why it failed, as pages the Airflow UI shows on every DAG run.

``facts`` and ``batch_view`` turn what a run recorded into view models (plain functions, no Airflow);
``report_table`` pages, sorts and filters a batch report of any size; ``chart`` draws the counts;
``store`` reads the run from Airflow's metadata DB; ``app`` is the FastAPI app the plugin mounts.
"""
