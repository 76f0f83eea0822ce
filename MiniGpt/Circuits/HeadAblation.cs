using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Training;

namespace MiniGpt.Circuits;

/// <summary>Losses of one run of the model: on the repeated half of repeated random sequences, on the data, and on the data's predictable positions (induction task only).</summary>
public sealed record AblationLosses(double Repeat, double Data, double? DataRepeat);

/// <summary>The losses with one head zero-ablated, and their ratios to the clean losses.</summary>
public sealed record HeadAblationResult(int Layer, int Head, AblationLosses Losses, AblationLosses Clean)
{
    public string Name => $"L{Layer}H{Head}";
    /// <summary>False for a head the run did not ablate (its losses and factors are NaN).</summary>
    public bool Measured => !double.IsNaN(Losses.Repeat);
    public double RepeatFactor => Losses.Repeat / Clean.Repeat;
    public double DataFactor => Losses.Data / Clean.Data;
    public double? DataRepeatFactor => Losses.DataRepeat / Clean.DataRepeat;
}

/// <summary>
/// Zero ablation of single heads through a forward hook (no copy of the model): on
/// blocks.{l}.attn.hook_z [batch, pos, head, d_head] the ablated head's slice is set to 0, so the head
/// contributes nothing to attn_out (b_O, shared by all heads, stays), as TransformerLens's
/// zero-ablation hooks on hook_z do. The effect is read as the loss ratio ablated / clean, on
///  - the repeated half of repeated random sequences (L random tokens, then the same L again; the probe of
///    <see cref="HeadProbe"/>): the mean loss of predicting tokens L+1 … 2L−1 of the sequence, each from the
///    position before, which only an induction circuit can predict (the first token of the repeat,
///    predicted at position L−1, cannot be, and is left out);
///  - the data: the mean loss over every position, and for the induction task over the positions
///    whose target is a predictable copy (the "repeat" loss train prints).
/// </summary>
public static class HeadAblation
{
    /// <summary>
    /// Repeated random sequences per probe: about 1024 tokens (32 sequences at n_ctx 32, 8 at n_ctx 128 and
    /// beyond, where the sequence stops growing at 2·<see cref="HeadProbe.MaxHalf"/>), which pins the mean loss
    /// down to a few percent and keeps a forward pass per head cheap for wide models.
    /// </summary>
    public static int ProbeBatchFor(int nCtx) => Math.Clamp(1024 / Math.Min(nCtx, 2 * HeadProbe.MaxHalf), 8, 32);

    /// <summary>The probe's seed, its own (not the head scores' 1), so the ablation is not measured on the sequences the heads were picked on.</summary>
    public const ulong ProbeSeed = 7;

    /// <summary>The clean losses and every head's, [layer·H + head]; with <paramref name="only"/>, only those heads are ablated and the rest read NaN.</summary>
    public static (AblationLosses Clean, List<HeadAblationResult> Heads) Run(GptModel model, EvalSet data, IReadOnlyCollection<(int Layer, int Head)>? only = null)
    {
        var c = model.Config;
        var clean = Measure(model, data, []);
        var skipped = new AblationLosses(double.NaN, double.NaN, null);
        var heads = new List<HeadAblationResult>();
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
                heads.Add(new HeadAblationResult(l, h, only == null || only.Contains((l, h)) ? Measure(model, data, [(l, h)]) : skipped, clean));
        return (clean, heads);
    }

    /// <summary>The losses with every listed head zero-ablated at once (none: the clean losses).</summary>
    public static AblationLosses Measure(GptModel model, EvalSet data, IReadOnlyList<(int Layer, int Head)> ablated)
    {
        var hooks = ablated.Select(x => ZeroHead(model, x.Layer, x.Head)).ToList();
        try
        {
            var probe = Evaluator.Run(model, [Probe(model.Config)], 2 * HeadProbe.HalfFor(model.Config.NCtx));
            var (all, predictable) = DataLoss(model, data);
            return new AblationLosses(probe.MaskedLoss!.Value, all, predictable);
        }
        finally { foreach (var h in hooks) h.Dispose(); }
    }

    /// <summary>
    /// The probe as one batch of [batch, 2L] sequences (L = n_ctx/2, at most <see cref="HeadProbe.MaxHalf"/>), masked to the positions L … 2L−2 whose
    /// targets are tokens L+1 … 2L−1. The last position's target (0) is never scored.
    /// </summary>
    public static EvalBatch Probe(ModelConfig c)
    {
        int half = HeadProbe.HalfFor(c.NCtx), T = 2 * half, batch = ProbeBatchFor(c.NCtx);
        var probe = HeadProbe.RepeatedRandomTokens(c.DVocab, batch, half, ProbeSeed);
        var targets = new int[probe.Length];
        var mask = new bool[probe.Length];
        for (int b = 0; b < batch; b++)
        {
            for (int i = 0; i < T - 1; i++) targets[b * T + i] = probe[b * T + i + 1];
            for (int i = half; i <= T - 2; i++) mask[b * T + i] = true;
        }
        return new EvalBatch(probe, targets, mask);
    }

    /// <summary>Registers the hook that zeroes head h of layer l's z; dispose it to restore the model.</summary>
    public static IDisposable ZeroHead(GptModel model, int layer, int head)
    {
        int H = model.Config.NHeads, dh = model.Config.DHead;
        return model.Hooks.AddForward($"blocks.{layer}.attn.hook_z", (z, p) =>
        {
            var s = z.Span;
            int positions = p.Batch * p.SeqLen;
            for (int n = 0; n < positions; n++) s.Slice((n * H + head) * dh, dh).Clear();
        });
    }

    /// <summary>Mean loss over every position of the data, and over the predictable ones when there is a mask.</summary>
    public static (double All, double? Predictable) DataLoss(GptModel model, EvalSet data)
    {
        var e = Evaluator.Run(model, data.Batches);
        return (e.Loss, e.MaskedLoss);
    }
}
