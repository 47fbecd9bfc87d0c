"""Tools around the PIR library, outside it (as open_clip_train sits beside open_clip): the
benchmark, the ablation runner and the ``pir`` command line. The library never imports them."""
