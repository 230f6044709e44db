"""The promotion gate: a challenger must be no worse than the champion on the same frozen
evaluation set (image AUROC, false-alarm rate at each model's own calibrated threshold) and
pass the stress smoke test and the export parity check. Every reason is kept, passed or not,
so the decision can be read back from the registry."""

from dataclasses import dataclass, field

from pipeline.retrain.config import GateConfig


@dataclass
class Figures:
    """One model on the frozen set."""

    version: str
    image_auroc: float | None
    false_alarm_rate: float | None


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ("promote: " if self.promote else "keep champion: ") + "; ".join(self.reasons)


def decide(
    challenger: Figures,
    champion: Figures | None,
    *,
    stress_sanity: bool | None,
    export_parity: bool | None,
    cfg: GateConfig,
) -> GateDecision:
    """Promote only when every criterion holds; the reasons say which held and which did not."""
    failed: list[str] = []
    passed: list[str] = []
    if cfg.require_stress_sanity:
        (passed if stress_sanity else failed).append(
            "stress smoke test passed" if stress_sanity else "stress smoke test failed"
        )
    if cfg.require_export_parity:
        (passed if export_parity else failed).append(
            "export parity passed" if export_parity else "export parity failed"
        )
    if champion is None:
        passed.append("no champion yet")
    else:
        _compare_auroc(challenger, champion, cfg, passed, failed)
        _compare_far(challenger, champion, cfg, passed, failed)
    return GateDecision(promote=not failed, reasons=failed + passed)


def _compare_auroc(
    new: Figures, old: Figures, cfg: GateConfig, passed: list[str], failed: list[str]
) -> None:
    if new.image_auroc is None or old.image_auroc is None:
        failed.append("image AUROC not measurable on the frozen set (no defects in it)")
        return
    text = (
        f"image AUROC {new.image_auroc:.4f} vs champion v{old.version} {old.image_auroc:.4f} "
        f"(allowed drop {cfg.max_auroc_drop:g})"
    )
    (passed if new.image_auroc >= old.image_auroc - cfg.max_auroc_drop else failed).append(text)


def _compare_far(
    new: Figures, old: Figures, cfg: GateConfig, passed: list[str], failed: list[str]
) -> None:
    if new.false_alarm_rate is None or old.false_alarm_rate is None:
        failed.append("false-alarm rate not measurable on the frozen set (no good frames in it)")
        return
    text = (
        f"false-alarm rate {new.false_alarm_rate:.4f} vs champion {old.false_alarm_rate:.4f} "
        f"(allowed rise {cfg.max_far_increase:g})"
    )
    ok = new.false_alarm_rate <= old.false_alarm_rate + cfg.max_far_increase
    (passed if ok else failed).append(text)
