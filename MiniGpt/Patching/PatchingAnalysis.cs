using System.Diagnostics;
using MiniGpt.Model;

namespace MiniGpt.Patching;

/// <summary>What <see cref="PatchingAnalysis.Run"/> runs: the grids (<see cref="PatchSpec.Standard"/> by default), the metric, the path-patching receivers.</summary>
public sealed record PatchingOptions
{
    public IReadOnlyList<PatchSpec>? Specs { get; init; }
    public PatchMetric Metric { get; init; } = PatchMetric.LogitDiff;
    /// <summary>Exact activation patching (a forward pass per cell).</summary>
    public bool Exact { get; init; } = true;
    /// <summary>Attribution patching (one backward for every cell).</summary>
    public bool Attribution { get; init; } = true;
    /// <summary>Receiving heads for path patching; null: the <see cref="AutoReceivers"/> heads of layers ≥ 1 whose z patching matters most.</summary>
    public IReadOnlyList<(int Layer, int Head)>? Receivers { get; init; }
    public int AutoReceivers { get; init; } = 2;
    /// <summary>
    /// Noising instead of denoising: the grids and paths patch one corrupted activation into the clean run
    /// (<see cref="PatchPrompts.Swapped"/>), so a cell reads 0 = the clean run, 1 = the corrupted run: the share of the
    /// damage that one site carries alone (necessity), where denoising measures what one site restores (sufficiency).
    /// The logit lens and direct logit attribution read the pairs as given either way.
    /// </summary>
    public bool Noising { get; init; }
    /// <summary>Called with (done, total, stage) as the cells are run, for a live bar.</summary>
    public Action<int, int, string>? Progress { get; init; }
}

/// <summary>
/// Exact and attribution patching of one grid side by side: their Pearson correlation over the cells, the largest gap
/// and the cell where it is (indices along the grid's axes), and the time each took.
/// </summary>
public sealed record PatchComparison(string Name, double Correlation, double MaxAbsDifference, int[] WorstCell, double ExactSeconds, double AttributionSeconds);

/// <summary>
/// Path patching into one input of one receiving head: from each head below it as the only sender (Grid, [layer, head]),
/// and from the embeddings and each MLP below it (Others).
/// </summary>
public sealed record PathPatchResult(int ReceiverLayer, int ReceiverHead, PathInput Input, PatchGrid Grid, IReadOnlyList<PathSenderEffect> Others);

/// <summary>
/// Everything one patching run measured. Prompts are the pairs as given and Clean/Corrupted their metrics; with Noising
/// the grids were run on the swapped pairs, so a grid's own Clean is the corrupted prompts' run (the patches' source).
/// Attribution's seconds cover all its grids (one forward and backward).
/// Saturation [layer, head] is each head's mean largest attention probability over the targets' query positions in
/// the run patched into, where attribution takes its gradient: near 1 the softmax is saturated, its gradient near 0, and
/// attribution through that head's q, k and pattern underestimates what patching does.
/// </summary>
public sealed record PatchingResult(
    ModelConfig Config, PatchPrompts Prompts, bool Noising, string Metric, double Clean, double Corrupted,
    IReadOnlyList<PatchGrid> Exact, IReadOnlyList<PatchGrid> Attribution, IReadOnlyList<PatchComparison> Comparisons,
    IReadOnlyList<PathPatchResult> Paths, IReadOnlyList<LogitLensLayer> LogitLens, IReadOnlyList<LogitLensLayer> CorruptedLogitLens,
    DirectLogitAttributionResult DirectLogitAttribution, double[] Saturation, double ExactSeconds, double AttributionSeconds, double PathSeconds, double Seconds);

/// <summary>
/// The patching report's analyses in one call: exact and attribution patching of every grid, their agreement,
/// path patching into q, k and v of the receivers from every head below, the logit lens of the clean and
/// corrupted runs and direct logit attribution of the clean run.
/// </summary>
public static class PatchingAnalysis
{
    public static PatchingResult Run(GptModel m, PatchPrompts pairs, PatchingOptions? options = null)
    {
        var o = options ?? new PatchingOptions();
        var p = o.Noising ? pairs.Swapped() : pairs; // the grids' experiment: p.Clean is the patches' source, p.Corrupted the run patched into
        var c = m.Config;
        var clock = Stopwatch.StartNew();
        var metric = o.Metric;
        var specs = (o.Specs ?? PatchSpec.Standard(c)).Select(s => s.Validate(c)).ToList();
        var (clean, corrupted) = ActivationPatching.Baseline(m, p, metric);

        var exact = new List<PatchGrid>();
        if (o.Exact)
        {
            int total = specs.Sum(s => s.Dimensions(c, p.SeqLen).Shape.Aggregate(1, (a, b) => a * b)), before = 0;
            foreach (var s in specs)
            {
                int offset = before;
                var g = ActivationPatching.Run(m, p, metric, s, (i, _) => o.Progress?.Invoke(offset + i, total, $"patching {s.Name}"));
                exact.Add(g);
                before += g.Values.Length;
            }
        }
        double exactSeconds = exact.Sum(g => g.Seconds);

        IReadOnlyList<PatchGrid> attribution = [];
        double attributionSeconds = 0;
        if (o.Attribution)
        {
            o.Progress?.Invoke(0, 1, "attribution patching");
            var sw = Stopwatch.StartNew();
            attribution = AttributionPatching.Run(m, p, metric, specs);
            attributionSeconds = sw.Elapsed.TotalSeconds;
            o.Progress?.Invoke(1, 1, "attribution patching");
        }
        var comparisons = new List<PatchComparison>();
        foreach (var e in exact)
            if (attribution.FirstOrDefault(a => a.Name == e.Name) is { } a)
            {
                int worst = WorstCell(e.Values, a.Values);
                comparisons.Add(new PatchComparison(e.Name, Pearson(e.Values, a.Values), worst < 0 ? double.NaN : Math.Abs(e.Values[worst] - a.Values[worst]),
                    worst < 0 ? [] : e.Index(worst), e.Seconds, attributionSeconds));
            }

        var receivers = o.Receivers ?? AutoPick(c, exact.Concat(attribution).FirstOrDefault(g => g.Name == "z"), o.AutoReceivers);
        var paths = new List<PathPatchResult>();
        var pathClock = Stopwatch.StartNew();
        int pathTotal = receivers.Sum(r => 3 * r.Layer * c.NHeads), pathDone = 0;
        foreach (var (l, h) in receivers)
            foreach (var input in new[] { PathInput.Q, PathInput.K, PathInput.V })
            {
                int offset = pathDone;
                var (g, others) = PathPatching.AllSenders(m, p, metric, l, h, input, (i, _) => o.Progress?.Invoke(offset + i, pathTotal, $"path patching into L{l}H{h}.{input}"));
                paths.Add(new PathPatchResult(l, h, input, g, others));
                pathDone += l * c.NHeads;
            }
        double pathSeconds = pathClock.Elapsed.TotalSeconds;

        o.Progress?.Invoke(0, 1, "logit lens and direct logit attribution");
        var lens = LogitLens.Run(m, pairs);
        var lensCorrupted = LogitLens.Run(m, pairs, corrupted: true);
        var dla = DirectLogitAttribution.Run(m, pairs);
        if (o.Noising) (clean, corrupted) = (corrupted, clean);
        return new PatchingResult(c, pairs, o.Noising, metric.Name, clean, corrupted, exact, attribution, comparisons, paths, lens, lensCorrupted, dla, Saturation(m, p),
            exactSeconds, attributionSeconds, pathSeconds, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The heads of layers ≥ 1 with the largest |z patching|, at most count of them.</summary>
    public static IReadOnlyList<(int Layer, int Head)> AutoPick(ModelConfig c, PatchGrid? z, int count)
    {
        if (z == null || c.NLayers < 2) return [];
        return Enumerable.Range(c.NHeads, (c.NLayers - 1) * c.NHeads)
            .Where(i => double.IsFinite(z.Values[i]))
            .OrderByDescending(i => Math.Abs(z.Values[i])).Take(count)
            .Select(i => (i / c.NHeads, i % c.NHeads)).ToList();
    }

    /// <summary>Pearson's r over the cells where both are finite; NaN with fewer than two or no spread.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        double sx = 0, sy = 0; int n = 0;
        for (int i = 0; i < x.Count; i++) if (double.IsFinite(x[i]) && double.IsFinite(y[i])) { sx += x[i]; sy += y[i]; n++; }
        if (n < 2) return double.NaN;
        double mx = sx / n, my = sy / n, cxy = 0, cxx = 0, cyy = 0;
        for (int i = 0; i < x.Count; i++)
            if (double.IsFinite(x[i]) && double.IsFinite(y[i]))
            {
                cxy += (x[i] - mx) * (y[i] - my); cxx += (x[i] - mx) * (x[i] - mx); cyy += (y[i] - my) * (y[i] - my);
            }
        return cxx == 0 || cyy == 0 ? double.NaN : cxy / Math.Sqrt(cxx * cyy);
    }

    /// <summary>The cell where exact and attribution differ most (−1 when no cell is finite in both).</summary>
    private static int WorstCell(double[] a, double[] b)
    {
        int worst = -1;
        for (int i = 0; i < a.Length; i++)
            if (double.IsFinite(a[i]) && double.IsFinite(b[i]) && (worst < 0 || Math.Abs(a[i] - b[i]) > Math.Abs(a[worst] - b[worst]))) worst = i;
        return worst;
    }

    /// <summary>Per head [layer, head]: the mean over rows and target positions of max_key pattern[query, key] in p's corrupted run (the run patched into).</summary>
    public static double[] Saturation(GptModel m, PatchPrompts p)
    {
        var c = m.Config;
        int B = p.Batch, T = p.SeqLen, H = c.NHeads;
        var cache = m.RunWithCache(p.Corrupted, B, T, n => n.EndsWith(".attn.hook_pattern", StringComparison.Ordinal));
        var s = new double[c.NLayers * H];
        for (int l = 0; l < c.NLayers; l++)
        {
            var a = cache[$"blocks.{l}.attn.hook_pattern"].Span;
            for (int h = 0; h < H; h++)
            {
                double sum = 0;
                for (int b = 0; b < B; b++)
                    foreach (var t in p.Targets[b])
                    {
                        var row = a.Slice(((b * H + h) * T + t.Position) * T, t.Position + 1);
                        float max = 0;
                        foreach (float v in row) max = Math.Max(max, v);
                        sum += max;
                    }
                s[l * H + h] = sum / p.TargetCount;
            }
        }
        return s;
    }
}
