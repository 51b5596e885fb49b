# Airflow image for the docker-compose stack (and a starting point for Kubernetes / the official Helm chart).
#
# Extends the official image as https://airflow.apache.org/docs/docker-stack/build.html recommends, instead
# of _PIP_ADDITIONAL_REQUIREMENTS (which reinstalls at every container start).
FROM apache/airflow:3.3.2

# The official image already ships the Celery, PostgreSQL and HTTP providers; installing our pins on top makes
# the containers run exactly the versions `make test` ran with (constraints.txt is the project's lock; it also
# pins dev tools, which is harmless because -c only constrains what is actually requested).
# "apache-airflow==3.3.2" stays on the line so pip can never up- or downgrade Airflow itself.
COPY --chown=airflow:0 requirements.txt requirements-celery.txt constraints.txt /opt/airflow/requirements/
# plugins/ is our package `twilio_messaging`, installed as an Airflow provider (`pip install -e`, as `make venv`
# does) so the "Twilio" connection type is registered; editable, so compose's ./plugins mount is the code run.
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
RUN pip install --no-cache-dir \
        "apache-airflow==3.3.2" \
        -r /opt/airflow/requirements/requirements.txt \
        -r /opt/airflow/requirements/requirements-celery.txt \
        -c /opt/airflow/requirements/constraints.txt \
    && pip install --no-cache-dir --no-deps -e /opt/airflow/plugins \
    && pip check

# Bake the project in so the image also runs without bind mounts (Kubernetes, Helm chart). In compose the
# ./dags, ./plugins and ./include mounts shadow these copies, so edits show up without a rebuild.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
