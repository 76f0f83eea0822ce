using System.Diagnostics;
using System.Globalization;
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Patching;
using MiniGpt.Train.Progress;
using MiniGpt.Train.Report;

namespace MiniGpt.Train;

/// <summary>
/// circuits: reads the circuits out of a checkpoint (MiniGpt/Circuits) and reports them as a text
/// table, circuits.json (every number), PNG plots and one self-contained report.html.
/// </summary>
public static class CircuitsVerb
{
    private static readonly Option<string?> Data = Option.OptionalText("data",
        "'induction' (the generated task), UTF-8 text in the checkpoint's tokenizer, a .bin of uint16 tokens or a folder written by prepare (its val.bin), opened as eval opens it: the loss curve and ablations use it",
        "induction without a tokenizer, else required");
    private static readonly Option<string?> Out = Option.OptionalText("out", "folder for circuits.json, the PNGs and report.html", "<checkpoint stem>.circuits/");
    private static readonly Option<bool> Json = Option.Flag("json", "print circuits.json to stdout instead of the summary table");
    private static readonly Option<string?> Heads = Option.OptionalText("heads", "heads whose attention patterns to draw, as L.H pairs: 1.2,0.3",
        "the top induction and previous-token heads");
    private static readonly Option<int?> BatchSize = Option.Of<int?>("batch-size", "windows per evaluation batch (the default makes batches of about 1024 tokens)",
        null, "1024/n_ctx, at most 32", (n, v) => Option.ParseInt(n, v)).Check(b => b is >= 1 and <= 4096, "must be in [1, 4096]");
    private static readonly Option<int> Batches = Option.Int("batches",
        "evaluation batches, taken from the start of --data's windows as eval reads them (give the validation split, e.g. a prepared folder, for held-out text)", DefaultBatches)
        .Check(b => b is >= 1 and <= 10_000, "must be in [1, 10000]");

    private static readonly Option<string> Ablate = Option.Text("ablate",
        $"heads to zero-ablate one at a time: auto (every head up to {NotableHeads.AllUpTo}, else at most {NotableHeads.Max}: those with a role, then each score's top {NotableHeads.TopPerScore}), all, none, or L.H pairs: 1.2,0.3",
        "auto");
    private static readonly Option<bool> AllHeads = Option.Flag("all-heads",
        $"list every head in the summary table (a model with more than {NotableHeads.AllUpTo} heads lists its notable ones and counts the rest)");

    private static readonly Option<bool?> Patching = Option.OptionalFlag("patching",
        "add noising activation, attribution and path patching of the induction pairs to the report (about a second; the patch verb does the full set)");

    internal static Options Declare() =>
        new Options("circuits", "circuits: detects previous-token, duplicate-token and induction heads, reads the OV/QK circuits, composition, in-context\n" +
                                "loss and head ablations of a checkpoint; prints a summary and writes circuits.json, PNG plots and report.html.",
            SharedOptions.Checkpoint, Data, Out, Json, Heads, Ablate, AllHeads, BatchSize, Batches, Patching, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        string ckpt = o.Get(SharedOptions.Checkpoint);
        int? batchOption = o.Get(BatchSize);
        int batches = o.Get(Batches);
        var heads = o.Get(Heads) is { } hs ? ParseHeads(hs) : null;
        string ablate = o.Get(Ablate);
        var ablated = ablate is "auto" or "all" ? null : ablate == "none" ? [] : HeadPairs.Parse(ablate, "ablate", "1.2,0.3", " (or auto, all, none)");
        string? outOption = o.Get(Out);
        var clock = Stopwatch.StartNew();

        var loaded = Checkpoint.Load(ckpt);
        var c = loaded.Model.Config;
        if (c.NLayers > 0 && c.NCtx < 4)
            throw new UserError($"circuits scores heads on a sequence repeated twice, which needs n_ctx ≥ 4; '{ckpt}' has n_ctx {c.NCtx}");
        foreach (var (name, list) in new[] { ("heads", heads), ("ablate", ablated) })
        {
            if (list is not { Count: > 0 }) continue;
            if (c.NLayers == 0) throw new UserError($"--{name}: '{ckpt}' is a zero-layer model and has no heads");
            foreach (var (l, h) in list)
                if (l >= c.NLayers || h >= c.NHeads)
                    throw new UserError($"--{name}: L{l}H{h} does not exist: the model has layers 0–{c.NLayers - 1} and heads 0–{c.NHeads - 1}");
        }
        int batch = batchOption ?? DefaultBatchSize(c.NCtx);
        var data = LoadData(o.Get(Data), loaded, ckpt, batch, batches);
        bool applies = PatchInCircuits.Applies(c, loaded.TokenizerJson != null);
        if (o.Get(Patching) == true && !applies)
            throw new UserError($"--patching: circuits patches the induction pairs of a model without a tokenizer; for '{ckpt}' give the pairs to the patch verb");
        // checked (created, written to) before the analysis: an unwritable --out is reported now, not after it
        string dir = ReportFolder.Prepare(outOption ?? Checkpoint.Stem(ckpt) + ".circuits", out bool created);
        var options = new CircuitsOptions { AttentionHeads = heads, AblatedHeads = ablated, AblateAll = ablate == "all" };
        try { Report(stdout, ckpt, loaded, data, options, dir, o.Get(Json), clock, patching: o.Get(Patching) ?? applies, allHeads: o.Get(AllHeads)); }
        catch { ReportFolder.RemoveIfUnused(dir, created); throw; }
        return 0;
    }

    /// <summary>Windows per evaluation batch unless --batch-size says otherwise: about 1024 tokens.</summary>
    internal static int DefaultBatchSize(int nCtx) => Math.Clamp(1024 / nCtx, 1, 32);

    /// <summary>Evaluation batches unless --batches says otherwise.</summary>
    internal const int DefaultBatches = 4;

    /// <summary>
    /// Runs the analysis (<see cref="CircuitsAnalysis.Run"/>) with its stages on a live bar in a terminal, writes the
    /// report (<see cref="CircuitsReport.Write"/>) to dir and prints the summary table, or circuits.json with json.
    /// train --track-circuits calls this too, for the final model of a run folder.
    /// </summary>
    internal static void Report(TextWriter stdout, string ckpt, Checkpoint.Loaded loaded, EvalSet data, CircuitsOptions options,
        string dir, bool json, Stopwatch clock, bool patching = false, bool allHeads = false)
    {
        var (result, patched, written) = ProgressView.Run(stdout, "circuits", sink =>
        {
            int stages = patching ? 8 : 7;
            int done = 0;
            var r = CircuitsAnalysis.Run(ckpt, loaded, data, options with { Stage = name => sink.Report(done++, stages, name) });
            PatchingResult? patch = null;
            if (patching)
            {
                var c = loaded.Model.Config;
                int at = done++;
                patch = PatchingAnalysis.Run(loaded.Model, PatchInCircuits.Prompts(c), new PatchingOptions
                {
                    Specs = PatchInCircuits.Specs(c), Noising = true,
                    Progress = (d, t, stage) => { if (sink.WantsStatus) sink.Report(at + (double)d / Math.Max(1, t), stages, stage); },
                });
            }
            sink.Report(done, stages, "plots");
            // every head's pattern on a window of the data, for report.html's attention view (one forward pass of ≤ 64 tokens)
            var window = loaded.Model.Config.NLayers > 0 ? AttentionWindow.Compute(loaded.Model, data) : null;
            return (r, patch, CircuitsReport.Write(r, dir, clock, patch, window));
        });
        if (json) stdout.WriteLine(written.Json);
        else
        {
            stdout.Write(SummaryTable.Format(result, allHeads));
            if (patched != null) stdout.WriteLine(PatchSummary.Brief(patched, result.Text));
            stdout.WriteLine($"wrote {written.JsonPath}, {written.Plots} plots and {written.HtmlPath} in {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s");
        }
    }

    /// <summary>"1.2,0.3" → [(1, 2), (0, 3)]; also accepts "L1H2".</summary>
    public static List<(int Layer, int Head)> ParseHeads(string s) => HeadPairs.Parse(s, "heads", "1.2,0.3");

    /// <summary>
    /// The evaluation batches, opened as eval opens them (<see cref="EvalData.Open"/>): without --data, the
    /// induction task for a checkpoint without a tokenizer (the task's models have none).
    /// </summary>
    private static EvalSet LoadData(string? data, Checkpoint.Loaded loaded, string ckpt, int B, int maxBatches)
    {
        if (data == null)
        {
            if (loaded.TokenizerJson != null)
                throw new UsageError($"'{ckpt}' was trained on text: pass --data with text like its training text (or --data induction)");
            data = "induction";
        }
        return EvalData.Open(data, loaded, B, maxBatches);
    }
}
