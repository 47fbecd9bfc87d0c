"""Use a trained model: index a folder of imagery, search it by text or by image (docs/search-and-geo.md).

- :mod:`pir.search.encoder`  a checkpoint as an image/text encoder
- :mod:`pir.search.onnx_encoder`  an ONNX export (`pir export --onnx`) as one, through onnxruntime, without torch
- :mod:`pir.search.folder`   an index folder: the ownership marker, the writers' lock, publishing a generation
- :mod:`pir.search.index`    build or update an index (atomic generations, incremental) and load one
- :mod:`pir.search.distributed`  the same index built by torchrun's processes (rank 0 writes)
- :mod:`pir.search.ann`      the approximate (faiss IVF-PQ) index of a large generation
- :mod:`pir.search.query`    top-k search over the index: exact, or ANN candidates scored exactly
- :mod:`pir.search.sheet`    a contact sheet of the hits
"""
