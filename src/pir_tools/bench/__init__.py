"""The benchmark: ``pir bench`` -> reports/bench.json and a table.

Every number comes from the library's real code paths: the training loader, the model
built by ``create_model``, the optimiser from ``make_optimizer``, ``embed_split`` and
``retrieval_metrics``. Timings exclude warm-up and report medians (steps) or totals over
a fixed amount of work (loader, embedding), so that re-running gives comparable numbers.

One module per section of the report (the JSON key it fills in brackets):

    machine           machine_info, matmul_gflops, sync             ["machine", "matmul_fp32_gflops"]
    memory            PeakMemory: peak memory over a timed block
    dataset           the synthetic prepared dataset the loader, embed and search rows read
    loader            tensor loader against PIL decode + augmentation   ["loader"]
    steps             train steps of a preset, their FLOPs             ["train_cpu", "train_cpu_bf16", ...]
    official          our step against the official-style reference    ["official_style"]
    embed             embed_split images/s and texts/s                 ["embed"]
    retrieval         retrieval_metrics against the per-query loop, the protocols and bootstrap
                                                                       ["retrieval_metrics", "evaluation_protocols"]
    near_duplicates   the leakage audit's all-pairs search and hashing ["near_duplicates"]
    search, ann       pir index / pir search, the approximate index     ["search"]
    concurrent_train  two train stages side by side                    ["concurrent_train"]
    clip              the clip-b32 train-step rows
    gpu               the paper preset on one GPU                      ["train_gpu_bf16"]
    baselines         pir baselines end to end                         ["baselines"]
    onnx              onnxruntime against torch, the export            ["onnx"]
    options           BenchOptions and the sizes each run uses
    report            run_benchmarks: every section, in order
    table             the human-readable summary
    cli               ``pir bench`` (main)

Nothing is imported here: a test or a subprocess that needs one section loads only its module.
"""
