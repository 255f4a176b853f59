"""Tests of the ``spaces`` package: the Architecture value, the registry, a conformance suite
parametrised over every registered space, and the two tabular benchmark spaces against the
externally measured tables (``NAS_BENCHMARK_DATA``, default ``../shared/data``).

The tables are loaded once per module (``get_space`` shares instances), so the file stays fast.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import spaces
from spaces import (
    Architecture,
    DataNotFoundError,
    InvalidArchitectureError,
    InvalidConfigError,
    SpacesError,
    UnknownMetricError,
    UnknownSpaceError,
)
from spaces.conformance import check_space, samples
from spaces.hwgpt import HWGPTSpace
from spaces.nb201 import EDGES, OPS, NB201Space

# Arch 0 of NAS-Bench-201, as NB201 writes it: node j's segment lists its inputs "op~i".
NB201_ARCH0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
NNMETER_DEVICES = {
    "cortexA76cpu_tflite21": 2000,
    "adreno640gpu_tflite21": 2000,
    "adreno630gpu_tflite21": 2000,
    "myriadvpu_openvino2019r2": 1999,
}
HWGPT_DEVICES = ("P100", "a100", "a40", "a6000", "h100", "rtx2080", "rtx3080", "v100",
                 "cpu_a6000", "cpu_alldlc", "cpu_mlgpu", "cpu_p100", "helix_cpu")


def edges_from_arch_str(s: str) -> dict[str, str]:
    """Parse an NB201 arch string independently of ``spaces.nb201``: ``{"j<-i": op}``."""
    out = {}
    for j, node in enumerate(s.strip("|").split("|+|"), start=1):
        for tok in node.split("|"):
            op, i = tok.split("~")
            out[f"{j}<-{i}"] = op
    return out


# -- fixtures (tables loaded once per module) ----------------------------------------
@pytest.fixture(scope="module")
def nb201():
    return spaces.get_space("nb201")


@pytest.fixture(scope="module")
def nb201_archs(nb201):
    return nb201.enumerate()


@pytest.fixture(scope="module")
def hwgpt():
    return spaces.get_space("hwgpt-s")


@pytest.fixture(scope="module")
def hwgpt_archs(hwgpt):
    return hwgpt.enumerate()


@pytest.fixture(scope="module")
def hwgpt_pool(hwgpt_archs):
    return {a.arch_id for a in hwgpt_archs}


# ====================================================================================
# Architecture
# ====================================================================================
JSON_SCALARS = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=5), max_leaves=20)
PARAMS = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8)


def _arch(params, space="toy", version="1"):
    return Architecture(space, version, params)


class TestArchitecture:
    def test_frozen(self):
        a = _arch({"depth": 3, "widths": [8, 16]})
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.space = "other"  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.arch_id = "0" * 20  # type: ignore[misc]
        with pytest.raises(TypeError):
            a.params["depth"] = 4  # type: ignore[index]
        with pytest.raises((TypeError, AttributeError)):
            a.params["widths"].append(32)  # nested lists are frozen too

    def test_isolated_from_caller_mutation(self):
        params = {"depth": 3, "widths": [8, 16]}
        a = _arch(params)
        before = a.arch_id
        params["depth"] = 4
        params["widths"].append(32)
        copy_ = a.params_dict()
        copy_["widths"].append(64)
        assert a.params_dict() == {"depth": 3, "widths": [8, 16]}
        assert a.arch_id == before

    def test_arch_id_ignores_key_order(self):
        a = _arch({"a": 1, "b": [1, 2], "c": "x"})
        b = _arch({"c": "x", "b": [1, 2], "a": 1})
        assert a.arch_id == b.arch_id
        assert a == b and hash(a) == hash(b)
        assert a.to_json() == b.to_json()

    @pytest.mark.parametrize("other", [
        _arch({"a": 2, "b": [1, 2], "c": "x"}),
        _arch({"a": 1, "b": [2, 1], "c": "x"}),
        _arch({"a": 1, "b": [1, 2]}),
        _arch({"a": 1.0, "b": [1, 2], "c": "x"}),  # 1.0 is not 1 in JSON
        _arch({"a": True, "b": [1, 2], "c": "x"}),  # nor is true
        _arch({"a": 1, "b": [1, 2], "c": "x"}, space="other"),
        _arch({"a": 1, "b": [1, 2], "c": "x"}, version="2"),
    ])
    def test_arch_id_differs_for_different_content(self, other):
        a = _arch({"a": 1, "b": [1, 2], "c": "x"})
        assert a.arch_id != other.arch_id
        assert a != other

    def test_arch_id_is_a_stable_content_hash(self):
        a = _arch({"a": 1})
        assert re.fullmatch(r"[0-9a-f]{20}", a.arch_id)
        assert _arch({"a": 1}).arch_id == a.arch_id  # not per process or per object

    def test_canonical_json(self):
        a = _arch({"b": [1, 2], "a": "x"})
        s = a.to_json()
        assert " " not in s
        assert s == json.dumps(json.loads(s), sort_keys=True, separators=(",", ":"))
        assert json.loads(s) == {"space": "toy", "space_version": "1", "params": {"a": "x", "b": [1, 2]},
                                 "arch_id": a.arch_id}

    def test_tampered_arch_id_is_rejected(self):
        a = _arch({"a": 1})
        d = a.to_dict()
        d["arch_id"] = "0" * 20
        with pytest.raises(InvalidArchitectureError, match="arch_id"):
            Architecture.from_dict(d)
        tampered = a.to_dict()
        tampered["params"]["a"] = 2  # params changed, id kept
        with pytest.raises(InvalidArchitectureError):
            Architecture.from_json(json.dumps(tampered))

    def test_from_dict_without_arch_id(self):
        a = _arch({"a": [1, "x", None]})
        d = a.to_dict()
        del d["arch_id"]
        assert Architecture.from_dict(d) == a

    def test_pickle_and_deepcopy(self):
        a = _arch({"a": 1, "b": [1, 2]})
        assert pickle.loads(pickle.dumps(a)) == a
        assert copy.deepcopy(a) == a

    @settings(max_examples=200, deadline=None)
    @given(PARAMS)
    def test_json_round_trip(self, params):
        a = _arch(params)
        b = Architecture.from_json(a.to_json())
        assert b == a
        assert b.arch_id == a.arch_id
        assert b.to_json() == a.to_json()  # types survive (1 vs 1.0 vs true)
        assert b.params_dict() == params
        c = Architecture.from_dict(json.loads(json.dumps(a.to_dict())))
        assert c == a and c.to_dict() == a.to_dict()

    @settings(max_examples=100, deadline=None)
    @given(PARAMS)
    def test_arch_id_independent_of_insertion_order(self, params):
        reordered = dict(reversed(list(params.items())))
        assert _arch(reordered).arch_id == _arch(params).arch_id


# ====================================================================================
# Registry
# ====================================================================================
class TestRegistry:
    def test_builtin_spaces_listed(self):
        names = spaces.list_spaces()
        assert {"nb201", "hwgpt-s"} <= set(names)
        assert names == sorted(names)

    def test_unknown_space(self):
        with pytest.raises(UnknownSpaceError) as exc:
            spaces.get_space("nope")
        msg = str(exc.value)
        assert "nope" in msg
        for name in spaces.list_spaces():
            assert name in msg
        assert isinstance(exc.value, SpacesError)

    def test_invalid_config_value(self):
        with pytest.raises(InvalidConfigError) as exc:
            spaces.get_space("nb201", dataset="bad")
        msg = str(exc.value)
        assert "space.dataset" in msg
        assert "'bad'" in msg
        for valid in ("cifar10", "cifar100", "ImageNet16-120"):
            assert valid in msg

    @pytest.mark.parametrize("name", spaces.list_spaces())
    def test_unknown_config_key(self, name):
        with pytest.raises(InvalidConfigError, match=r"space\.no_such_key"):
            spaces.get_space(name, no_such_key=1)

    @pytest.mark.parametrize("name", spaces.list_spaces())
    def test_instances_shared(self, name):
        assert spaces.get_space(name) is spaces.get_space(name)
        assert spaces.space_class(name).name == name


# ====================================================================================
# Conformance: every registered space
# ====================================================================================
# spaces whose sampling reads the parent (llm-subnet's importance masks) use their test parent
TEST_CONFIG = {"llm-subnet": {"parent": "llm-tiny"}}


def _space(name: str):
    return spaces.get_space(name, **TEST_CONFIG.get(name, {}))


@pytest.mark.parametrize("name", spaces.list_spaces())
class TestConformance:
    def test_shipped_suite(self, name):
        check_space(_space(name))

    def test_rejects_architecture_of_other_version(self, name):
        space = _space(name)
        a = samples(space, 5, n=1)[0]
        with pytest.raises(InvalidArchitectureError):
            space.validate(Architecture(a.space, a.space_version + "-old", a.params))

    def test_optuna_trial_is_a_suggest(self, name):
        optuna = pytest.importorskip("optuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = _space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            a = space.sample(trial)
            space.validate(a)
            study.tell(trial, 0.0)

    def test_tabular_contract(self, name):
        space = spaces.get_space(name)
        if not isinstance(space, spaces.TabularSpace):
            pytest.skip(f"{name} is not tabular")
        archs = space.enumerate()
        assert len({a.arch_id for a in archs}) == len(archs)
        for i in (0, len(archs) // 2, len(archs) - 1):
            assert space.index_of(archs[i]) == i
        for key in space.metric_keys():
            col = space.metric_array(key)
            assert col.shape == (len(archs),), key
            assert np.isfinite(col).any(), key
        assert space.encoded_table().shape == (len(archs), space.encode(archs[:1]).shape[1])


# ====================================================================================
# nb201
# ====================================================================================
class TestNB201:
    def test_enumerate_in_nb201_order(self, nb201, nb201_archs):
        assert len(nb201_archs) == 15625 == 5 ** 6
        assert nb201_archs[0].params_dict() == edges_from_arch_str(NB201_ARCH0)
        assert nb201.from_index(0) == nb201_archs[0]
        assert nb201.index_of(nb201_archs[0]) == 0
        assert nb201.lookup(nb201_archs[0])["accuracy"] == pytest.approx(85.863, abs=1e-3)

    def test_order_matches_help_index(self, nb201, nb201_archs):
        """An independent source of NB201 indices: HELP's ``str_arch2idx.pt`` (all 15625)."""
        torch = pytest.importorskip("torch")
        str_to_idx = torch.load(spaces.data_file("help-nb201-fbnet-latency", "nasbench201", "str_arch2idx.pt"),
                                weights_only=False)
        assert len(str_to_idx) == 15625
        for s, i in str_to_idx.items():
            assert nb201_archs[i].params_dict() == edges_from_arch_str(s), (i, s)

    def test_help_latency(self, nb201, nb201_archs):
        assert nb201.lookup(nb201_archs[0])["latency_ms@raspi4"] == 10.481976820010459
        col = nb201.metric_array("latency_ms@raspi4")
        assert col.shape == (15625,) and np.isfinite(col).all() and (col > 0).all()

    @pytest.mark.parametrize("dataset,best", [("cifar10", 94.37), ("cifar100", 73.51), ("ImageNet16-120", 47.31)])
    def test_max_accuracy(self, dataset, best):
        acc = spaces.get_space("nb201", dataset=dataset).metric_array("accuracy")
        assert acc.shape == (15625,)
        assert np.isfinite(acc).all()
        assert acc.max() == pytest.approx(best, abs=0.01)

    @pytest.mark.parametrize("device,count", NNMETER_DEVICES.items())
    def test_nnmeter_devices(self, nb201, nb201_archs, device, count):
        key = f"latency_ms@{device}"
        assert nb201.resolve_metric("latency_ms", device) == key
        col = nb201.metric_array(key)
        measured = np.isfinite(col)
        assert col.shape == (15625,)
        assert measured.sum() == count
        assert (col[measured] > 0).all()
        unmeasured = int(np.flatnonzero(~measured)[0])
        row = nb201.lookup(nb201_archs[unmeasured])
        assert key not in row
        assert "accuracy" in row and "latency_ms@raspi4" in row
        hit = int(np.flatnonzero(measured)[0])
        assert nb201.lookup(nb201_archs[hit], [key]) == {key: col[hit]}

    def test_unknown_device(self, nb201):
        with pytest.raises(UnknownMetricError) as exc:
            nb201.resolve_metric("latency_ms", "toaster")
        msg = str(exc.value)
        assert "objective.device" in msg and "toaster" in msg
        for device in ("raspi4", "fpga", "1080ti_1", *NNMETER_DEVICES):
            assert device in msg
        with pytest.raises(UnknownMetricError, match=r"constraints\[0\]\.device"):
            nb201.resolve_metric("latency_ms", "toaster", field="constraints[0]")
        with pytest.raises(UnknownMetricError, match="toaster"):
            nb201.metric_array("latency_ms@toaster")

    def test_unknown_metric(self, nb201, nb201_archs):
        with pytest.raises(UnknownMetricError) as exc:
            nb201.resolve_metric("bogus")
        msg = str(exc.value)
        assert "objective.name" in msg and "bogus" in msg
        assert "accuracy" in msg and "latency_ms" in msg
        with pytest.raises(UnknownMetricError):
            nb201.metric_array("bogus")
        with pytest.raises(UnknownMetricError):
            nb201.lookup(nb201_archs[0], ["bogus"])

    def test_device_rules(self, nb201):
        assert nb201.resolve_metric("accuracy") == "accuracy"
        assert nb201.resolve_metric("latency_ms", "raspi4") == "latency_ms@raspi4"
        with pytest.raises(UnknownMetricError, match="needs a device"):
            nb201.resolve_metric("latency_ms")
        with pytest.raises(UnknownMetricError, match="not per-device"):
            nb201.resolve_metric("accuracy", "raspi4")

    @pytest.mark.parametrize("change,needle", [
        ({"1<-0": "conv_9x9"}, "'1<-0'"),
        ({"3<-2": "Skip_Connect"}, "'3<-2'"),
        ({"2<-1": None}, "'2<-1'"),
        ({"4<-3": "none"}, "'4<-3'"),
        ({"bogus": 1}, "'bogus'"),
        ({"3<-0": ...}, "'3<-0'"),  # ... = leave the edge out
        ({"2<-0": ["none"]}, "'2<-0'"),
    ])
    def test_invalid_params(self, nb201, change, needle):
        params = {e: "none" for e in EDGES}
        for k, v in change.items():
            if v is ...:
                del params[k]
            else:
                params[k] = v
        with pytest.raises(InvalidArchitectureError) as exc:
            nb201.from_params(params)
        assert needle in str(exc.value)

    def test_graph_drops_zero_edges(self, nb201):
        a = nb201.from_params({e: "none" if e == "3<-0" else "nor_conv_3x3" for e in EDGES})
        g = nb201.graph(a)
        assert "3<-0" not in g
        assert g.nodes["2<-1"]["op"] == "nor_conv_3x3"
        assert nx.has_path(g, "n0", "n3")

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(OPS), min_size=6, max_size=6),
           st.lists(st.sampled_from(OPS), min_size=6, max_size=6))
    def test_encode_one_hot(self, nb201, ops_a, ops_b):
        a = nb201.from_params(dict(zip(EDGES, ops_a)))
        x = nb201.encode([a])
        assert x.shape == (1, 30 + 5 + 84 + 1)
        row = x[0]
        onehot = row[:30]
        assert set(np.unique(onehot)) <= {0.0, 1.0}
        assert onehot.sum() == 6
        blocks = onehot.reshape(6, 5)
        assert (blocks.sum(axis=1) == 1).all()  # one op per edge
        assert [OPS[i] for i in blocks.argmax(axis=1)] == ops_a
        assert list(row[30:35]) == [ops_a.count(op) for op in OPS]  # op counts
        # paths input->output: 0->3, 0->1->3, 0->2->3, 0->1->2->3 (edge positions in EDGES)
        paths = ([3], [0, 4], [1, 5], [0, 2, 5])
        live = [all(ops_a[e] != "none" for e in p) for p in paths]
        distinct = {tuple(ops_a[e] for e in p) for p, ok in zip(paths, live) if ok}
        assert row[35:119].sum() == len(distinct)  # which op sequences occur, not how often
        assert row[119] == float(any(live))
        assume(ops_a != ops_b)
        b = nb201.from_params(dict(zip(EDGES, ops_b)))
        assert a != b
        assert not np.array_equal(nb201.encode([b])[0], row)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(OPS), min_size=6, max_size=6))
    def test_canonical_drops_exactly_the_dead_edges(self, nb201, ops):
        a = nb201.from_params(dict(zip(EDGES, ops)))
        c = nb201.canonical(a)
        # the paths input->output (edge positions in EDGES), written out again here
        paths = ([3], [0, 4], [1, 5], [0, 2, 5])
        on_live_path = {e for p in paths if all(ops[e] != "none" for e in p) for e in p}
        assert [c.params[e] for e in EDGES] == [op if k in on_live_path else "none" for k, op in enumerate(ops)]
        assert nb201.canonical(c) == c
        np.testing.assert_array_equal(nb201.encode([c])[0, 35:], nb201.encode([a])[0, 35:])  # same paths
        assert (c == a) == all(k in on_live_path or op == "none" for k, op in enumerate(ops))

    def test_canonical_forms_are_the_same_network_for_nats_bench(self, nb201, nb201_archs):
        # NATS-Bench's own isomorphism key (``UniqueString``): a sum of terms ``(x)@op`` over the
        # input ``0``, with ``#`` for zero. It keeps the ops that act on zero (``(#+#)@op``), so
        # those are pruned here; then cells with one canonical form must share the key (ours is
        # finer: it does not merge cells that differ only by the order of commuting nodes)
        import csv

        from spaces._data import data_file

        def prune(expr: str) -> str:
            terms, depth, start = [], 0, 0
            for i, ch in enumerate(expr + "+"):
                depth += (ch == "(") - (ch == ")")
                if ch == "+" and depth == 0:
                    terms.append(expr[start:i])
                    start = i + 1
            live = []
            for t in terms:
                if t.startswith("("):
                    inner, op = t[1:].rsplit(")@", 1)
                    t = "#" if prune(inner) == "#" else f"({prune(inner)})@{op}"
                if t != "#":
                    live.append(t)
            return "+".join(sorted(live)) or "#"

        with open(data_file("nb201-accuracy", "nats_bench.csv"), newline="") as f:
            keys = [prune(r["UniqueString"]) for r in csv.DictReader(f)]
        by_form: dict[str, set[str]] = {}
        for arch, key in zip(nb201_archs, keys):
            by_form.setdefault(nb201.canonical(arch).arch_id, set()).add(key)
        assert all(len(k) == 1 for k in by_form.values())
        assert 9000 < len(by_form) < 10000  # 9,445 functions among 15,625 cells


# ====================================================================================
# hwgpt-s
# ====================================================================================
def _non_pool_params(hwgpt_archs, pool):
    """Valid structured params that are not one of the measured subnets."""
    for a in hwgpt_archs:
        p = a.params_dict()
        for i in range(p["n_layer"]):
            for h in (4, 8, 12):
                q = copy.deepcopy(p)
                q["n_head"][i] = h
                if Architecture(a.space, a.space_version, q).arch_id not in pool:
                    return q
    raise AssertionError("every neighbour is in the pool")


class TestHWGPT:
    def test_pool(self, hwgpt, hwgpt_archs, hwgpt_pool):
        assert len(hwgpt_archs) == 10000
        assert len(hwgpt_pool) == 10000

    def test_lookup(self, hwgpt, hwgpt_archs):
        row = hwgpt.lookup(hwgpt_archs[0])
        for key in ("perplexity", "params", "flops"):
            assert key in row and np.isfinite(row[key]) and row[key] > 0
        latency = {k for k in row if k.startswith("latency_ms@")}
        assert latency == {f"latency_ms@{d}" for d in HWGPT_DEVICES}
        assert len(latency) == 13
        assert "latency_ms@cpu_meta" not in row
        assert all(v > 0 for k, v in row.items() if k in latency)

    def test_latency_columns_complete(self, hwgpt):
        assert hwgpt.metrics()["latency_ms"].devices == HWGPT_DEVICES
        for d in HWGPT_DEVICES:
            col = hwgpt.metric_array(f"latency_ms@{d}")
            assert col.shape == (10000,) and np.isfinite(col).all() and (col > 0).all()

    def test_cpu_meta_rejected(self, hwgpt):
        with pytest.raises(UnknownMetricError) as exc:
            hwgpt.resolve_metric("latency_ms", "cpu_meta")
        msg = str(exc.value)
        assert "objective.device" in msg and "cpu_meta" in msg and "unreliable" in msg
        assert "a100" in msg  # and says what is valid
        with pytest.raises(UnknownMetricError, match="unreliable"):
            hwgpt.metric_array("latency_ms@cpu_meta")

    def test_single_device_metric_by_name(self, hwgpt, hwgpt_archs):
        assert hwgpt.resolve_metric("memory_mb") == "memory_mb@a100"
        try:
            col = hwgpt.metric_array("memory_mb")
        except UnknownMetricError:  # an explicit, explained refusal would be acceptable too
            return
        assert col.shape == (10000,)

    def test_non_pool_subnet(self, hwgpt, hwgpt_archs, hwgpt_pool):
        params = _non_pool_params(hwgpt_archs, hwgpt_pool)
        with pytest.raises(InvalidArchitectureError, match="nearest"):
            hwgpt.from_params(params)
        snapped = hwgpt.nearest(params)
        assert snapped.arch_id in hwgpt_pool
        # nearest by L1 distance on the encoding
        x = hwgpt.encode([Architecture(hwgpt.name, hwgpt.version, params)])[0]
        dist = np.abs(hwgpt.encode(hwgpt_archs) - x).sum(axis=1)
        assert np.abs(hwgpt.encode([snapped])[0] - x).sum() == pytest.approx(dist.min())

    def test_nearest_of_member_is_itself(self, hwgpt, hwgpt_archs):
        for a in hwgpt_archs[::1000]:
            assert hwgpt.nearest(a.params_dict()) == a
            assert hwgpt.from_params(a.params_dict()) == a

    def test_sample_in_pool(self, hwgpt, hwgpt_pool):
        suggest = spaces.RandomSuggest(123)
        for _ in range(200):
            assert hwgpt.sample(suggest).arch_id in hwgpt_pool

    @pytest.mark.parametrize("change,needle", [
        ({"embed_dim": 100}, "embed_dim"),
        ({"n_layer": 9}, "n_layer"),
        ({"n_head": [4] * 3}, "n_head"),
        ({"mlp_ratio": "wide"}, "mlp_ratio"),
        ({"bias": 1}, "bias"),
        ({"dropout": 0.1}, "dropout"),
        ({"n_layer": ...}, "n_layer"),
    ])
    def test_invalid_params(self, hwgpt, hwgpt_archs, change, needle):
        params = hwgpt_archs[0].params_dict()
        for k, v in change.items():
            if v is ...:
                del params[k]
            else:
                params[k] = v
        with pytest.raises(InvalidArchitectureError, match=needle):
            hwgpt.from_params(params)


# ====================================================================================
# Data location
# ====================================================================================
@pytest.mark.parametrize("cls,filename", [(NB201Space, "nats_bench.csv"),
                                          (HWGPTSpace, "hwgpt_s_ppl_latency.csv")])
def test_missing_data_names_variable_and_file(monkeypatch, tmp_path, cls, filename):
    monkeypatch.setenv("NAS_BENCHMARK_DATA", str(tmp_path))
    space = cls()  # a fresh instance: get_space would return a cached one with tables loaded
    with pytest.raises(DataNotFoundError) as exc:
        space.enumerate()
    msg = str(exc.value)
    assert "NAS_BENCHMARK_DATA" in msg
    assert filename in msg
    assert str(tmp_path) in msg
    assert isinstance(exc.value, FileNotFoundError)
