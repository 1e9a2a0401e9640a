"""Every config value is range-checked where it is parsed: one-line ValueErrors that name the key.

These use only load_config / build_diffusion, so each one also runs against older code (where the
values below were accepted and failed later, or never)."""

import pytest

from discdiff.training import build_diffusion, load_config

BAD = [
    # (override, words the one-line message must contain)
    ("steps=0", "steps must be >= 1"),
    ("steps=-5", "steps must be >= 1"),
    ("batch_size=0", "batch_size must be >= 1"),
    ("micro_batch_size=0", "micro_batch_size must be >= 1"),
    ("micro_batch_size=5", "multiple of micro_batch_size"),
    ("log_every=0", "log_every must be >= 1"),
    ("eval_every=-1", "eval_every must be >= 0"),
    ("save_every=-1", "save_every must be >= 0"),
    ("eval_batches=0", "eval_batches must be >= 1"),
    ("keep_checkpoints=0", "keep_checkpoints must be >= 1"),
    ("max_bad_steps=0", "max_bad_steps must be >= 1"),
    ("threads=-1", "threads must be >= 1"),
    ("threads=0", "threads must be >= 1"),
    ("device=gpu", "device must be"),
    ("precision=fp16", "precision must be one of"),
    ("parallel=horovod", "parallel must be one of"),
    ("out_dir=''", "out_dir must be"),
    ("optim.warmup_steps=-10", "optim.warmup_steps must be >= 0"),
    ("optim.lr=0", "optim.lr must be > 0"),
    ("optim.lr=-1e-3", "optim.lr must be > 0"),
    ("optim.lr=.nan", "optim.lr must be a finite number"),
    ("optim.lr=.inf", "optim.lr must be a finite number"),
    ("optim.betas=[0.9, 1.0]", "optim.betas must be two numbers in [0, 1)"),
    ("optim.betas=[-0.1, 0.9]", "optim.betas must be two numbers in [0, 1)"),
    ("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0"),
    ("optim.eps=0", "optim.eps must be > 0"),
    ("optim.grad_clip=-1", "optim.grad_clip must be >= 0"),
    ("optim.ema_decay=1.0", "optim.ema_decay must be in [0, 1)"),
    ("optim.min_lr_ratio=2", "optim.min_lr_ratio must be in [0, 1]"),
    ("data.dtype=bogus", "data.dtype must be one of"),
    ("data.dtype=float32", "data.dtype must be one of"),
    ("data.context=0", "data.context must be >= 1"),
    ("data.vocab_size=0", "data.vocab_size must be >= 2"),
    ("data.vocab_size=1", "data.vocab_size must be >= 2"),
    ("model.d_model=0", "model.d_model must be >= 1"),
    ("model.n_layers=0", "model.n_layers must be >= 1"),
    ("model.n_heads=0", "model.n_heads must be >= 1"),
    ("model.cond_dim=0", "model.cond_dim must be >= 1"),
    ("model.max_len=0", "model.max_len must be >= 1"),
    ("model.d_model=30", "model.d_model=30 is not divisible by n_heads=4"),
    ("model.dropout=1.0", "model.dropout must be in [0, 1)"),
    ("model.dropout=-0.1", "model.dropout must be in [0, 1)"),
    ("model.norm=batchnorm", "model.norm must be"),
    ("model.mlp_ratio=0", "model.mlp_ratio must be > 0"),
    ("diffusion.kind=bogus", "diffusion.kind must be one of"),
    ("diffusion.graph=bogus", "diffusion.graph must be one of"),
    ("diffusion.schedule=bogus", "diffusion.schedule must be one of"),
    ("diffusion.parameterization=bogus", "diffusion.parameterization must be one of"),
    ("diffusion.objective=bogus", "diffusion.objective must be one of"),
    ("diffusion.t_min=0", "diffusion.t_min must be in (0, 1)"),
    ("diffusion.t_min=1", "diffusion.t_min must be in (0, 1)"),
    ("diffusion.eps=0", "LogLinear needs 0 < eps < 1"),
    ("diffusion.eps=1.5", "LogLinear needs 0 < eps < 1"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b[0] for b in BAD])
def test_out_of_range_values_are_refused_where_parsed(override, message):
    with pytest.raises(ValueError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_edge_values_still_load():
    cfg = load_config(None, ["eval_every=0", "save_every=0", "optim.warmup_steps=0", "optim.grad_clip=0",
                             "optim.ema_decay=0", "threads=null", "micro_batch_size=8", "device=cuda:1",
                             "data.dtype=uint32", "optim.betas=[0, 0.5]"])
    assert (cfg.eval_every, cfg.save_every, cfg.micro_batch_size, cfg.device) == (0, 0, 8, "cuda:1")


@pytest.mark.parametrize("text, line", [("model:\n  d_model: [1, 2\nsteps: 3\n", 3),
                                         ("steps: 3\nmodel:\n\td_model: 4\n", 3),
                                         ("a: b: c\n", 1)])
def test_invalid_yaml_is_one_line_naming_file_and_line(tmp_path, text, line):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: invalid YAML") and "\n" not in message


def test_a_config_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_config(path)


def test_linear_schedule_uses_its_sigma_min_and_max():
    # regression: `schedule: linear` built dd.Linear() and silently ignored sigma_min / sigma_max
    cfg = load_config(None, ["diffusion.schedule=linear", "diffusion.sigma_min=0.5", "diffusion.sigma_max=3.0",
                             "diffusion.graph=uniform", "diffusion.parameterization=score"])
    noise = build_diffusion(cfg.diffusion, 5).schedule(__import__("torch").tensor([0.0, 1.0]))
    assert noise.total.tolist() == pytest.approx([0.5, 3.0])
    assert noise.rate.tolist() == pytest.approx([2.5, 2.5])


@pytest.mark.parametrize("overrides, message", [
    (["diffusion.sigma_min=0.1"], "sigma_min does not apply to schedule 'loglinear' (it takes: eps)"),
    (["diffusion.schedule=geometric", "diffusion.eps=0.01"], "eps does not apply to schedule 'geometric'"),
    (["diffusion.rate_matrix=q.npy"], "rate_matrix does not apply to graph 'absorbing'"),
    (["diffusion.graph=dense", "diffusion.objective=score_entropy"], "rate_matrix is required by graph 'dense'"),
    (["diffusion.graph=similarity", "diffusion.objective=l2"], "similarity is required by graph 'similarity'"),
    (["diffusion.temperature=2"], "temperature does not apply to graph 'absorbing'"),
    (["diffusion.graph=uniform"], "objective 't_dce' (the default for parameterization 'denoiser') masks tokens"),
    (["diffusion.graph=ordinal", "diffusion.objective=k_dce"], "objective 'k_dce' masks tokens"),
    (["diffusion.schedule=geometric", "diffusion.sigma_min=0"], "Geometric needs 0 < sigma_min < sigma_max"),
    (["diffusion.sedd_absorb_scale=true"], "sedd_absorb_scale applies to graph 'absorbing' with parameterization"),
    (["diffusion.kind=ar", "diffusion.objective=k_dce"], "objective does not apply to kind 'ar'"),
    (["diffusion.kind=ar", "diffusion.graph=uniform"], "graph does not apply to kind 'ar'"),
])
def test_options_that_do_not_apply_are_refused(overrides, message):
    with pytest.raises(ValueError) as err:
        load_config(None, overrides)
    assert message in str(err.value) and str(err.value).startswith("diffusion.")


def test_diffusion_sections_saved_by_older_versions_still_load():
    from dataclasses import asdict

    from discdiff.training import DiffusionConfig, config_from_dict
    from discdiff.training.config import upgrade_saved_diffusion

    old_defaults = {"eps": 1e-3, "sigma_min": 1e-4, "sigma_max": 20.0}
    for saved, kept in [({"schedule": "loglinear"}, {"eps"}), ({"schedule": "geometric"}, {"sigma_min", "sigma_max"}),
                        ({"kind": "ar"}, set())]:
        section = {**asdict(DiffusionConfig()), **saved, **old_defaults}
        with pytest.raises(ValueError, match="does not apply"):
            config_from_dict(section, DiffusionConfig)
        upgraded = config_from_dict(upgrade_saved_diffusion(section), DiffusionConfig)
        assert {k for k in old_defaults if getattr(upgraded, k) is not None} == kept


def test_record_layout_keys_are_checked():
    from discdiff.training.config import DataConfig

    assert DataConfig().records == "eos" and DataConfig().long_records == "crop"
    with pytest.raises(ValueError, match="records must be one of eos, pad"):
        DataConfig(records="padded")
    with pytest.raises(ValueError, match="long_records must be one of crop, drop, error"):
        DataConfig(long_records="skip")
