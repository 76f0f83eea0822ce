namespace MiniGpt.Data;

/// <summary>
/// One batch of evaluation windows: inputs and targets [B, T] row-major (targets are the inputs shifted by
/// one), and optionally a mask [B, T] of the positions a masked mean is taken over (the induction task's
/// positions whose target is a predictable copy; the repeated half of a repeated random sequence).
/// </summary>
public sealed record EvalBatch(int[] Inputs, int[] Targets, bool[]? Mask = null);
