"""scikit-learn's digits (1,797 real 8x8 scans of handwritten digits, shipped with the
package): the data the ``vit-elastic`` parents train and are evaluated on."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["digits_split", "N_TEST"]

N_TEST = 599  # a third, stratified: the held-out split every top-1 is measured on


@lru_cache(maxsize=1)
def digits_split():
    """``(x_train, y_train, x_test, y_test)`` as torch tensors, images ``(n, 1, 8, 8)`` in [-1, 1].

    The split is fixed (stratified, ``random_state=0``): every parent and every evaluation
    on every machine sees the same held-out images.
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 8.0 - 1.0)[:, None]  # pixel values are 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=N_TEST, stratify=d.target, random_state=0)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_te), torch.from_numpy(y_te).long())
