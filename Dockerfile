# Airflow image for the docker-compose stack (and a starting point for Kubernetes / the official Helm chart).
#
# Extends the official image as https://airflow.apache.org/docs/docker-stack/build.html recommends, instead
# of _PIP_ADDITIONAL_REQUIREMENTS (which reinstalls at every container start).

# Stage 1: the provider's wheel, built from plugins/ as `make dist` builds it (sdist, then the wheel from it),
# so `docker compose up --build` works on a fresh clone without a local build first.
FROM apache/airflow:3.3.2 AS provider-wheel
COPY --chown=airflow:0 plugins/ /tmp/provider/
RUN pip install --no-cache-dir "build==1.6.1" \
    && python -m build --outdir /tmp/dist /tmp/provider

FROM apache/airflow:3.3.2

# The official image already ships the Celery, PostgreSQL and HTTP providers; installing our pins on top makes
# the containers run exactly the versions `make test` ran with (constraints.txt is the project's lock; it also
# pins dev tools, which is harmless because -c only constrains what is actually requested).
# "apache-airflow==3.3.2" stays on the line so pip can never up- or downgrade Airflow itself.
COPY --chown=airflow:0 requirements.txt requirements-celery.txt constraints.txt /opt/airflow/requirements/
# Our provider as users install it: the built wheel, not an editable checkout. It registers the Twilio
# connection type and the Messages plugin through its entry points, so no file in the plugins folder is needed.
COPY --from=provider-wheel --chown=airflow:0 /tmp/dist/ /opt/airflow/dist/
RUN pip install --no-cache-dir \
        "apache-airflow==3.3.2" \
        -r /opt/airflow/requirements/requirements.txt \
        -r /opt/airflow/requirements/requirements-celery.txt \
        -c /opt/airflow/requirements/constraints.txt \
        /opt/airflow/dist/airflow_provider_twilio_messaging-*.whl \
    && pip check

# Bake the DAGs in so the image also runs without bind mounts (Kubernetes, Helm chart). In compose the ./dags
# and ./include mounts shadow these copies, so DAG edits show up without a rebuild; a change to the package
# (plugins/twilio_messaging) needs `docker compose build`, as it would for any installed provider.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/
