using System.Diagnostics;
using System.Globalization;
using MiniGpt.Superposition;
using MiniGpt.Train.Progress;
using MiniGpt.Train.Report;

namespace MiniGpt.Train;

/// <summary>
/// superposition: the toy models of Elhage et al. 2022 (MiniGpt/Superposition): n sparse features into m &lt; n
/// dimensions, one model per sparsity, with WᵀW, feature norms coloured by superposition and dimensionality;
/// an n = 5 (--plane-n), m = 2 sweep drawn as arrows (the pentagon); the n = 2, m = 1 phase diagram over density ×
/// relative importance. Written as superposition.json, PNGs and superposition.html.
/// </summary>
public static class SuperpositionVerb
{
    private static readonly SuperpositionOptions D = new();

    // every value is checked when the verb runs (SuperpositionOptions.Validate), not at parse time: --help's test parses each option with "1"
    private static readonly Option<int> N = Option.Int("n", "features", D.N);
    private static readonly Option<int> M = Option.Int("m", "hidden dimensions (< n)", D.M);
    private static readonly Option<string> Sparsities = Option.Text("sparsities", "comma-separated sparsities S in [0, 1), one model each (S: the probability a feature is 0)",
        string.Join(",", D.Sparsities.Select(s => s.ToString(CultureInfo.InvariantCulture)))).Shown("FLOAT,…");
    private static readonly Option<float> Importance = Option.Float("importance", "r of the importances I_i = r^i, in (0, 1]", (float)D.Importance);
    private static readonly Option<int> Steps = Option.Int("steps", "AdamW steps of each sweep model", D.Train.Steps);
    private static readonly Option<int> BatchSize = Option.Int("batch-size", "samples per step", D.Train.BatchSize);
    private static readonly Option<float> Lr = Option.Float("lr", "peak learning rate (cosine to lr/10)", D.Train.Lr);
    private static readonly Option<float> WeightDecay = Option.Float("weight-decay", "AdamW's decoupled weight decay of W (0: Adam, as the paper)", D.Train.WeightDecay);
    private static readonly Option<int> Restarts = Option.Int("restarts", "initialisations of each sweep model, the one of least held-out loss kept", D.Train.Restarts);
    private static readonly Option<int> PlaneN = Option.Int("plane-n", "features of the m = 2 sweep drawn as arrows (5: the pentagon; 0 skips it)", D.PlaneN);
    private static readonly Option<int> PlaneRestarts = Option.Int("plane-restarts", "initialisations of each m = 2 model, the best kept", D.PlaneRestarts);
    private static readonly Option<int> PhaseGrid = Option.Int("phase-grid", "points a side of the n = 2, m = 1 phase diagram (0 skips it)", D.PhaseGrid);
    private static readonly Option<int> PhaseSteps = Option.Int("phase-steps", "AdamW steps of each phase-diagram model", D.PhaseSteps);
    private static readonly Option<int> PhaseRestarts = Option.Int("phase-restarts", "initialisations of each phase-diagram model, the best kept", D.PhaseRestarts);
    private static readonly Option<ulong> Seed = Option.ULong("seed", "seed of the initialisations and the data", D.Seed);
    private static readonly Option<string> Out = Option.Text("out", "folder for superposition.json, the PNGs and superposition.html", "superposition");
    private static readonly Option<bool> Json = Option.Flag("json", "print superposition.json to stdout instead of the summary");

    internal static Options Declare() =>
        new Options("superposition", "superposition: toy models of superposition (Elhage et al. 2022). x' = ReLU(WᵀW·x + b) with W [m, n] learns n sparse features\n" +
                                     "(0 with probability S, else U[0, 1]; importance r^i) in m < n dimensions, one model per sparsity; reports WᵀW, the feature norms\n" +
                                     "coloured by superposition, each feature's dimensionality and the represented directions' orthogonality against random ones;\n" +
                                     "an m = 2 sweep as arrows (n = 5: the pentagon) and the n = 2, m = 1 phase diagram. Writes superposition.json, PNGs and superposition.html.",
            N, M, Sparsities, Importance, Steps, BatchSize, Lr, WeightDecay, Restarts, PlaneN, PlaneRestarts, PhaseGrid, PhaseSteps, PhaseRestarts, Seed, Out, Json,
            SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        var clock = Stopwatch.StartNew();
        var options = new SuperpositionOptions
        {
            N = o.Get(N), M = o.Get(M), Sparsities = ParseSparsities(o.Get(Sparsities)), Importance = o.Get(Importance),
            PlaneN = o.Get(PlaneN), PlaneRestarts = o.Get(PlaneRestarts), PhaseGrid = o.Get(PhaseGrid), PhaseSteps = o.Get(PhaseSteps), PhaseRestarts = o.Get(PhaseRestarts), Seed = o.Get(Seed),
            Train = new ToyTrainOptions
            {
                Steps = o.Get(Steps), BatchSize = o.Get(BatchSize), Lr = o.Get(Lr), WeightDecay = o.Get(WeightDecay), Restarts = o.Get(Restarts),
            },
        };
        CheckRanges(options);
        options.Validate();
        // checked as the other report verbs check it: writable before a minute of training, removed again if the run fails
        string dir = ReportFolder.Prepare(o.Get(Out)!, out bool created);
        SuperpositionResult result;
        SuperpositionReport.Written written;
        try
        {
            (result, written) = ProgressView.Run(stdout, "superposition", sink =>
            {
                var r = SuperpositionExperiment.Run(options, (done, total) => sink.Report(done, total, $"{done}/{total} models"));
                sink.Report(1, 1, "plots");
                return (r, SuperpositionReport.Write(r, dir));
            });
        }
        catch { ReportFolder.RemoveIfUnused(dir, created); throw; }
        if (o.Get(Json)) stdout.WriteLine(written.Json);
        else
        {
            stdout.Write(SuperpositionSummary.Format(result));
            stdout.WriteLine(ConsoleLine.Wrap($"wrote {written.JsonPath}, {written.Plots} plots and {written.HtmlPath} in {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s", 6));
        }
        return 0;
    }

    /// <summary>Limits of the option values themselves (the experiment checks how they fit together): one-line errors naming the option.</summary>
    private static void CheckRanges(SuperpositionOptions s)
    {
        var t = s.Train;
        if (t.Steps is < 1 or > 10_000_000) throw new UserError($"--steps {t.Steps}: use 1 … 10000000");
        if (t.BatchSize is < 1 or > 1 << 20) throw new UserError($"--batch-size {t.BatchSize}: use 1 … {1 << 20}");
        if (!(t.Lr > 0 && t.Lr <= 1)) throw new UserError($"--lr {t.Lr.ToString(CultureInfo.InvariantCulture)}: use a learning rate in (0, 1]");
        if (!(t.WeightDecay >= 0 && t.WeightDecay < 1000)) throw new UserError($"--weight-decay {t.WeightDecay.ToString(CultureInfo.InvariantCulture)}: use ≥ 0");
        if (t.Restarts is < 1 or > 64) throw new UserError($"--restarts {t.Restarts}: use 1 … 64");
        if (s.PhaseSteps is < 1 or > 10_000_000) throw new UserError($"--phase-steps {s.PhaseSteps}: use 1 … 10000000");
        if ((long)s.N * s.M > 1 << 24) throw new UserError($"--n {s.N} --m {s.M}: W would have more than {1 << 24} entries");
    }

    /// <summary>"0,0.9,0.99" → the sparsities; a UsageError for a value that is not a number.</summary>
    internal static double[] ParseSparsities(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageError("--sparsities is empty: give sparsities such as 0,0.9,0.99");
        var v = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out v[i]) || !double.IsFinite(v[i]))
                throw new UsageError($"--sparsities: '{parts[i]}' is not a number: give comma-separated sparsities such as 0,0.9,0.99");
        if (v.Distinct().Count() != v.Length) throw new UsageError($"--sparsities '{text}' repeats a sparsity: give each once");
        return v;
    }
}
