using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Training;

namespace MiniGpt.Circuits;

/// <summary>Losses of one run of the model: on the repeated half of repeated random sequences, on the data, and on the data's predictable positions (induction task only).</summary>
public sealed record AblationLosses(double Repeat, double Data, double? DataRepeat);

/// <summary>
/// The losses with one head zero-ablated (<see cref="Losses"/>) and mean-ablated (<see cref="MeanLosses"/>), and their
/// ratios to the clean losses.
/// </summary>
public sealed record HeadAblationResult(int Layer, int Head, AblationLosses Losses, AblationLosses Clean, AblationLosses? MeanLosses = null)
{
    public string Name => $"L{Layer}H{Head}";
    /// <summary>False for a head the run did not ablate (its losses and factors are NaN).</summary>
    public bool Measured => !double.IsNaN(Losses.Repeat);
    public double RepeatFactor => Losses.Repeat / Clean.Repeat;
    public double DataFactor => Losses.Data / Clean.Data;
    public double? DataRepeatFactor => Losses.DataRepeat / Clean.DataRepeat;
    /// <summary>Whether the head was also mean-ablated.</summary>
    public bool MeanMeasured => MeanLosses is { } m && !double.IsNaN(m.Repeat);
    public double MeanRepeatFactor => (MeanLosses?.Repeat ?? double.NaN) / Clean.Repeat;
    public double MeanDataFactor => (MeanLosses?.Data ?? double.NaN) / Clean.Data;
    public double? MeanDataRepeatFactor => MeanLosses?.DataRepeat / Clean.DataRepeat;
}

/// <summary>
/// The mean of every head's z (blocks.{l}.attn.hook_z) over the batch and the positions of the clean model's runs, in
/// [layer][head·d_head + e]: on the ablation probe (<see cref="Probe"/>) and on the data, each replacing the head on
/// its own sequences.
/// </summary>
public sealed record HeadMeans(float[][] Probe, float[][] Data);

/// <summary>
/// Zero and mean ablation of single heads through a forward hook (no copy of the model): on
/// blocks.{l}.attn.hook_z [batch, pos, head, d_head] the ablated head's slice is set to 0 (zero ablation: the head
/// contributes nothing to attn_out; b_O, shared by all heads, stays), or to the mean z̄ of that head over the batch
/// and positions of the same evaluation sequences run clean (mean ablation: attn_out gets the constant z̄·W_O[h], so
/// only what the head adds beyond its average is removed), as TransformerLens's ablation hooks on hook_z do. Zero
/// ablation also removes the head's constant part, which a later layer may rely on as a bias: a head whose z barely
/// varies can look important under zero ablation and not under mean ablation. The effect is read as the loss ratio
/// ablated / clean, on
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

    /// <summary>
    /// The clean losses and every head's, [layer·H + head], zero- and mean-ablated; with <paramref name="only"/>, only
    /// those heads are ablated and the rest read NaN. <paramref name="means"/>: the clean model's <see cref="Means"/> when
    /// the caller has them (null: computed here).
    /// </summary>
    public static (AblationLosses Clean, List<HeadAblationResult> Heads) Run(GptModel model, EvalSet data, IReadOnlyCollection<(int Layer, int Head)>? only = null,
        HeadMeans? means = null)
    {
        var c = model.Config;
        var clean = Measure(model, data, []);
        if (only is not { Count: 0 }) means ??= Means(model, data);
        var skipped = new AblationLosses(double.NaN, double.NaN, null);
        var heads = new List<HeadAblationResult>();
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
                heads.Add(only == null || only.Contains((l, h))
                    ? new HeadAblationResult(l, h, Measure(model, data, [(l, h)]), clean, Measure(model, data, [(l, h)], means))
                    : new HeadAblationResult(l, h, skipped, clean, skipped));
        return (clean, heads);
    }

    /// <summary>
    /// The losses with every listed head ablated at once (none: the clean losses): zero-ablated, or with
    /// <paramref name="means"/> (<see cref="Means"/>) mean-ablated.
    /// </summary>
    public static AblationLosses Measure(GptModel model, EvalSet data, IReadOnlyList<(int Layer, int Head)> ablated, HeadMeans? means = null)
    {
        float[][]? replacement = null; // per layer: what the ablated heads' z become on the current evaluation (null: 0)
        var hooks = ablated.Select(x => ReplaceHead(model, x.Layer, x.Head, () => replacement)).ToList();
        try
        {
            replacement = means?.Probe;
            var probe = Evaluator.Run(model, [Probe(model.Config)], 2 * HeadProbe.HalfFor(model.Config.NCtx));
            replacement = means?.Data;
            var (all, predictable) = DataLoss(model, data);
            return new AblationLosses(probe.MaskedLoss!.Value, all, predictable);
        }
        finally { foreach (var h in hooks) h.Dispose(); }
    }

    /// <summary>
    /// Every head's mean z over the batch and positions, on the probe and on the data, of the model as it is: one clean
    /// pass over each with a hook on every layer's hook_z that sums in double. z̄[l][h·d_head + e] = Σ_{b,t} z[b,t,h,e] / (B·T).
    /// </summary>
    public static HeadMeans Means(GptModel model, EvalSet data)
    {
        var c = model.Config;
        return new HeadMeans(MeanZ(model, [Probe(c)], 2 * HeadProbe.HalfFor(c.NCtx)), MeanZ(model, data.Batches, 0));
    }

    private static float[][] MeanZ(GptModel model, IReadOnlyList<EvalBatch> batches, int seqLen)
    {
        var c = model.Config;
        int width = c.NHeads * c.DHead;
        var sums = new double[c.NLayers][];
        long positions = 0;
        var hooks = new List<IDisposable>();
        for (int l = 0; l < c.NLayers; l++)
        {
            var sum = sums[l] = new double[width];
            bool first = l == 0;
            hooks.Add(model.Hooks.AddForward($"blocks.{l}.attn.hook_z", (z, p) =>
            {
                var s = z.Span;
                int n = p.Batch * p.SeqLen;
                if (first) positions += n;
                for (int i = 0; i < n; i++)
                {
                    var row = s.Slice(i * width, width);
                    for (int k = 0; k < width; k++) sum[k] += row[k];
                }
            }));
        }
        try { Evaluator.Run(model, batches, seqLen); }
        finally { foreach (var h in hooks) h.Dispose(); }
        var means = new float[c.NLayers][];
        for (int l = 0; l < c.NLayers; l++)
        {
            means[l] = new float[width];
            for (int k = 0; k < width; k++) means[l][k] = (float)(sums[l][k] / positions);
        }
        return means;
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
    public static IDisposable ZeroHead(GptModel model, int layer, int head) => ReplaceHead(model, layer, head, () => null);

    /// <summary>Registers the hook that sets head h of layer l's z, at every position, to replacement()[layer]'s slice of the head (0 when replacement() is null).</summary>
    private static IDisposable ReplaceHead(GptModel model, int layer, int head, Func<float[][]?> replacement)
    {
        int H = model.Config.NHeads, dh = model.Config.DHead;
        return model.Hooks.AddForward($"blocks.{layer}.attn.hook_z", (z, p) =>
        {
            var s = z.Span;
            var value = replacement() is { } r ? r[layer].AsSpan(head * dh, dh) : default;
            int positions = p.Batch * p.SeqLen;
            for (int n = 0; n < positions; n++)
            {
                var slot = s.Slice((n * H + head) * dh, dh);
                if (value.IsEmpty) slot.Clear();
                else value.CopyTo(slot);
            }
        });
    }

    /// <summary>Mean loss over every position of the data, and over the predictable ones when there is a mask.</summary>
    public static (double All, double? Predictable) DataLoss(GptModel model, EvalSet data)
    {
        var e = Evaluator.Run(model, data.Batches);
        return (e.Loss, e.MaskedLoss);
    }
}
