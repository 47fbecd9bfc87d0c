"""Use a trained model: index a folder of imagery, search it by text or by image (docs/design.md, "Search").

- :mod:`pir.search.encoder`  a checkpoint as an image/text encoder
- :mod:`pir.search.index`    build or update an index folder (atomic generations, incremental; writes only
                             into folders it owns, one writer at a time)
- :mod:`pir.search.query`    exact top-k search over the index
- :mod:`pir.search.sheet`    a contact sheet of the hits
"""
