"""The pipeline layer: what turns the library into a DVC + MLflow pipeline. The library (pir.data,
pir.models, pir.training, pir.evaluation, pir.analysis, pir.search) takes typed configs and paths and
knows none of this.

- :mod:`pir.pipeline.params`     params.yaml and recipes resolved into the library's typed configs
- :mod:`pir.pipeline.paths`      every file a stage reads or writes (dvc.yaml wires the same paths)
- :mod:`pir.pipeline.tracking`   MLflow: one run per stage, tags, the store
- :mod:`pir.pipeline.seed_runs`  seed groups (a configuration over several seeds) in MLflow
- :mod:`pir.pipeline.reports`    the JSON reports and figures under reports/
- :mod:`pir.pipeline.entry`      the entry point the stage scripts call (:func:`~pir.pipeline.entry.main`)
- one module per DVC stage, each ``run(cfgs, paths)``: fetch, audit, scene_prior, train, evaluate,
  analyze, index

Nothing is imported here, so importing one of these modules loads only what it needs.
"""
