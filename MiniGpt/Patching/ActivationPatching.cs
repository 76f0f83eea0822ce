using System.Diagnostics;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Patching;

/// <summary>
/// One patch: at the hook point of a site in block Layer, the values of one head (−1: every head) at one
/// position (−1: every position) are replaced by another run's. For pattern the position is the query's.
/// </summary>
public readonly record struct PatchCell(PatchSite Site, int Layer, int Head = -1, int Pos = -1)
{
    public string HookName => new PatchSpec(Site, PatchAxes.LayerPos).HookName(Layer);
}

/// <summary>
/// Activation patching in TransformerLens's denoising convention (transformer_lens/patching.py): run the
/// clean prompts with a cache, then run the corrupted prompts once per cell of a grid with that cell's
/// activation replaced by the clean one (a forward hook), and read the metric, normalised so that 0 is the
/// corrupted run and 1 the clean run: (m_patched − m_corrupted)/(m_clean − m_corrupted). For the reverse
/// (noising) experiment, swap the clean and corrupted prompts.
/// <code>
/// var p = PatchPrompts.Induction(model.Config.DVocab, batch: 16, half: 16, seed: 1);
/// var grid = ActivationPatching.ResidPre(model, p, PatchMetric.LogitDiff);   // [layer, pos]
/// </code>
/// </summary>
public static class ActivationPatching
{
    public static PatchGrid ResidPre(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.ResidPre, PatchAxes.LayerPos));
    public static PatchGrid AttnOut(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.AttnOut, PatchAxes.LayerPos));
    public static PatchGrid MlpOut(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.MlpOut, PatchAxes.LayerPos));
    /// <summary>Each head's z at every position: [layer, head].</summary>
    public static PatchGrid HeadOutputs(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.Z, PatchAxes.LayerHead));
    /// <summary>Each head's z at one position: [layer, head, pos].</summary>
    public static PatchGrid HeadOutputsByPosition(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.Z, PatchAxes.LayerHeadPos));
    public static PatchGrid Queries(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.Q, PatchAxes.LayerHead));
    public static PatchGrid Keys(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.K, PatchAxes.LayerHead));
    public static PatchGrid Values(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.V, PatchAxes.LayerHead));
    public static PatchGrid Patterns(GptModel m, PatchPrompts p, PatchMetric metric) => Run(m, p, metric, new(PatchSite.Pattern, PatchAxes.LayerHead));

    /// <summary>The grid of one spec: a forward pass of the corrupted prompts per cell. progress gets (cells done, cells).</summary>
    public static PatchGrid Run(GptModel m, PatchPrompts p, PatchMetric metric, PatchSpec spec, Action<int, int>? progress = null)
    {
        var c = m.Config;
        spec.Validate(c);
        CheckFits(m, p);
        var clock = Stopwatch.StartNew();
        var names = Enumerable.Range(0, c.NLayers).Select(spec.HookName).ToHashSet();
        var clean = m.RunWithCache(p.Clean, p.Batch, p.SeqLen, names.Contains);
        double mClean = metric.Value(m.Logits, p, c.DVocab);
        double mCorrupted = Metric(m, p.Corrupted, p, metric);
        var (axes, shape) = spec.Dimensions(c, p.SeqLen);
        int cells = shape.Aggregate(1, (a, b) => a * b);
        var raw = new double[cells];
        var values = new double[cells];
        for (int i = 0; i < cells; i++)
        {
            raw[i] = Patched(m, p, metric, clean, [CellOf(spec, shape, i)]);
            values[i] = PatchGrid.Normalise(raw[i], mClean, mCorrupted);
            progress?.Invoke(i + 1, cells);
        }
        return new PatchGrid(spec.Name, "exact", axes, shape, values, raw, mClean, mCorrupted, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The metric of the corrupted prompts with every listed cell replaced by its value in source (a cache of the clean run).</summary>
    public static double Patched(GptModel m, PatchPrompts p, PatchMetric metric, ActivationCache source, IReadOnlyList<PatchCell> cells)
    {
        var c = m.Config;
        var handles = new List<IDisposable>();
        try
        {
            foreach (var cell in cells)
            {
                var from = source[cell.HookName];
                handles.Add(m.Hooks.AddForward(cell.HookName, (t, hp) => Copy(from.Span, t.Span, cell, c, hp.Batch, hp.SeqLen)));
            }
            return Metric(m, p.Corrupted, p, metric);
        }
        finally { foreach (var h in handles) h.Dispose(); }
    }

    /// <summary>The metric of one forward pass of tokens [B, T] (with whatever hooks are registered).</summary>
    public static double Metric(GptModel m, int[] tokens, PatchPrompts p, PatchMetric metric)
    {
        m.Forward(tokens, default, p.Batch, p.SeqLen);
        return metric.Value(m.Logits, p, m.Config.DVocab);
    }

    /// <summary>The clean and corrupted metrics (1 and 0 of every grid).</summary>
    public static (double Clean, double Corrupted) Baseline(GptModel m, PatchPrompts p, PatchMetric metric)
    {
        CheckFits(m, p);
        return (Metric(m, p.Clean, p, metric), Metric(m, p.Corrupted, p, metric));
    }

    internal static void CheckFits(GptModel m, PatchPrompts p)
    {
        if (p.SeqLen > m.Config.NCtx)
            throw new UserError($"the prompts are {p.SeqLen} tokens but the model reads at most n_ctx = {m.Config.NCtx}: shorten them");
    }

    /// <summary>Cell i of a spec's grid (row-major over its shape).</summary>
    public static PatchCell CellOf(PatchSpec spec, int[] shape, int i) => spec.Axes switch
    {
        PatchAxes.LayerPos => new(spec.Site, i / shape[1], -1, i % shape[1]),
        PatchAxes.LayerHead => new(spec.Site, i / shape[1], i % shape[1]),
        _ => new(spec.Site, i / (shape[1] * shape[2]), i / shape[2] % shape[1], i % shape[2]),
    };

    /// <summary>
    /// The contiguous runs (offset, length) of a cell's values in its hook point's tensor: residual
    /// [B, T, d_model], heads [B, T, H, d_head], pattern [B, H, T(query), T(key)].
    /// </summary>
    public static IEnumerable<(int Offset, int Length)> Runs(PatchCell cell, ModelConfig c, int B, int T)
    {
        int D = c.DModel, H = c.NHeads, dh = c.DHead;
        for (int b = 0; b < B; b++)
        {
            if (PatchSpec.IsResidualSite(cell.Site))
                yield return cell.Pos < 0 ? (b * T * D, T * D) : ((b * T + cell.Pos) * D, D);
            else if (cell.Site == PatchSite.Pattern)
            {
                for (int h = 0; h < H; h++)
                    if (cell.Head < 0 || h == cell.Head)
                        yield return cell.Pos < 0 ? ((b * H + h) * T * T, T * T) : ((b * H + h) * T * T + cell.Pos * T, T);
            }
            else if (cell.Pos >= 0)
                // one position: its offset directly, not a scan of all T (attribution runs this per cell of z_by_pos)
                yield return cell.Head < 0 ? ((b * T + cell.Pos) * H * dh, H * dh) : (((b * T + cell.Pos) * H + cell.Head) * dh, dh);
            else
            {
                for (int t = 0; t < T; t++)
                    yield return cell.Head < 0 ? ((b * T + t) * H * dh, H * dh) : (((b * T + t) * H + cell.Head) * dh, dh);
            }
        }
    }

    private static void Copy(ReadOnlySpan<float> from, Span<float> to, PatchCell cell, ModelConfig c, int B, int T)
    {
        foreach (var (at, n) in Runs(cell, c, B, T)) from.Slice(at, n).CopyTo(to.Slice(at, n));
    }
}
