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
/// Notes say what the run did differently from what was asked (e.g. how --receivers auto picked, or why it picked none).
/// </summary>
public sealed record PatchingResult(
    ModelConfig Config, PatchPrompts Prompts, bool Noising, string Metric, double Clean, double Corrupted,
    IReadOnlyList<PatchGrid> Exact, IReadOnlyList<PatchGrid> Attribution, IReadOnlyList<PatchComparison> Comparisons,
    IReadOnlyList<PathPatchResult> Paths, IReadOnlyList<LogitLensLayer> LogitLens, IReadOnlyList<LogitLensLayer> CorruptedLogitLens,
    DirectLogitAttributionResult DirectLogitAttribution, double[] Saturation, double ExactSeconds, double AttributionSeconds, double PathSeconds, double Seconds,
    IReadOnlyList<string>? Notes = null);

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

        // one running count for the bar, in forward passes: an exact cell is one, attribution three (two forwards and a
        // backward), a path sender two (the run that records the receiver's input, the run that reads the metric) plus two per
        // receiver input for its clean and corrupted caches, the lens, attribution and saturation at the end four. With
        // --receivers auto the receivers are not known until z is patched, so their share starts as its largest value (all
        // in the last layer) and is made exact once they are picked: the bar only ever jumps forward.
        int Cells(PatchSpec s) => s.Dimensions(c, p.SeqLen).Shape.Aggregate(1, (a, b) => a * b);
        int PathPasses(IEnumerable<int> layers) => layers.Sum(l => 3 * (2 + 2 * PathPatching.SenderCount(c, l)));
        var zSpec = new PatchSpec(PatchSite.Z, PatchAxes.LayerHead);
        bool auto = o.Receivers == null && o.AutoReceivers > 0;
        bool pickingZ = auto && c.NLayers >= 2 && !specs.Contains(zSpec); // no z grid to pick the receivers from: patch z for that alone
        int autoCount = Math.Min(o.AutoReceivers, (c.NLayers - 1) * c.NHeads);
        int done = 0, total = (o.Exact ? specs.Sum(Cells) : 0) + (o.Attribution ? 3 : 0) + (pickingZ ? (o.Exact ? Cells(zSpec) : 3) : 0)
            + (auto ? PathPasses(Enumerable.Repeat(c.NLayers - 1, Math.Max(0, autoCount))) : PathPasses((o.Receivers ?? []).Select(r => r.Layer))) + 4;
        void Report(int d, string stage) => o.Progress?.Invoke(d, total, stage);

        var exact = new List<PatchGrid>();
        if (o.Exact)
            foreach (var s in specs)
            {
                int offset = done;
                var g = ActivationPatching.Run(m, p, metric, s, (i, _) => Report(offset + i, $"patching {s.Name}"));
                exact.Add(g);
                done += g.Values.Length;
            }
        double exactSeconds = exact.Sum(g => g.Seconds);

        IReadOnlyList<PatchGrid> attribution = [];
        double attributionSeconds = 0;
        if (o.Attribution)
        {
            Report(done, "attribution patching");
            var sw = Stopwatch.StartNew();
            attribution = AttributionPatching.Run(m, p, metric, specs);
            attributionSeconds = sw.Elapsed.TotalSeconds;
            Report(done += 3, "attribution patching");
        }
        var comparisons = new List<PatchComparison>();
        foreach (var e in exact)
            if (attribution.FirstOrDefault(a => a.Name == e.Name) is { } a)
            {
                int worst = WorstCell(e.Values, a.Values);
                comparisons.Add(new PatchComparison(e.Name, Pearson(e.Values, a.Values), worst < 0 ? double.NaN : Math.Abs(e.Values[worst] - a.Values[worst]),
                    worst < 0 ? [] : e.Index(worst), e.Seconds, attributionSeconds));
            }

        var notes = new List<string>();
        IReadOnlyList<(int Layer, int Head)> receivers = o.Receivers ?? [];
        if (auto)
        {
            var z = exact.Concat(attribution).FirstOrDefault(g => g.Name == "z");
            if (pickingZ)
            {
                // the grids asked for hold no z: patch z (exactly, unless exact patching is off) only to pick the receivers,
                // rather than skip path patching without a word
                int offset = done;
                z = o.Exact ? ActivationPatching.Run(m, p, metric, zSpec, (i, _) => Report(offset + i, "patching z to pick the receivers"))
                    : AttributionPatching.Run(m, p, metric, [zSpec])[0];
                done += o.Exact ? z.Values.Length : 3;
                notes.Add($"--receivers auto: the grids hold no z, so the receivers were picked from {(o.Exact ? "exact" : "attribution")} z patching run for that (not shown)");
            }
            receivers = AutoPick(c, z, o.AutoReceivers);
            if (receivers.Count == 0)
                notes.Add(c.NLayers < 2 ? "--receivers auto: a one-layer model has no head that reads another head's output, so no path was patched"
                    : "--receivers auto: no head of layer ≥ 1 has a finite z patching value (clean and corrupted give one metric), so no path was patched; name the receivers (--receivers 1.0)");
            total += PathPasses(receivers.Select(r => r.Layer)) - PathPasses(Enumerable.Repeat(c.NLayers - 1, Math.Max(0, autoCount)));
        }
        var paths = new List<PathPatchResult>();
        var pathClock = Stopwatch.StartNew();
        foreach (var (l, h) in receivers)
            foreach (var input in new[] { PathInput.Q, PathInput.K, PathInput.V })
            {
                int offset = done + 2; // the receiver input's clean and corrupted caches
                var (g, others) = PathPatching.AllSenders(m, p, metric, l, h, input, (i, _) => Report(offset + 2 * i, $"path patching into L{l}H{h}.{input}"));
                paths.Add(new PathPatchResult(l, h, input, g, others));
                done += 2 + 2 * PathPatching.SenderCount(c, l);
            }
        double pathSeconds = pathClock.Elapsed.TotalSeconds;

        Report(done, "logit lens and direct logit attribution");
        var lens = LogitLens.Run(m, pairs);
        var lensCorrupted = LogitLens.Run(m, pairs, corrupted: true);
        var dla = DirectLogitAttribution.Run(m, pairs);
        var saturation = Saturation(m, p);
        Report(done += 4, "logit lens and direct logit attribution");
        if (o.Noising) (clean, corrupted) = (corrupted, clean);
        return new PatchingResult(c, pairs, o.Noising, metric.Name, clean, corrupted, exact, attribution, comparisons, paths, lens, lensCorrupted, dla, saturation,
            exactSeconds, attributionSeconds, pathSeconds, clock.Elapsed.TotalSeconds, notes);
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
