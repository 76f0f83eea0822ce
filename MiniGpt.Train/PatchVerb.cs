using System.Diagnostics;
using System.Globalization;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Circuits;
using MiniGpt.Model;
using MiniGpt.Patching;
using MiniGpt.Train.Progress;
using MiniGpt.Train.Report;

namespace MiniGpt.Train;

/// <summary>
/// patch: causal interventions on a checkpoint (MiniGpt/Patching): activation patching of every site, its
/// attribution-patching estimate beside it, path patching into the heads that matter, the logit lens and
/// direct logit attribution, on clean/corrupted prompt pairs; written as patch.json, PNG heatmaps and patch.html.
/// </summary>
public static class PatchVerb
{
    private static readonly Option<string?> Task = Option.OptionalText("task",
        "'induction': pairs of a random sequence repeated (clean) and the same second half after another first half (corrupted)",
        "induction without a tokenizer, else none").Choices("induction");
    private static readonly Option<int> Batch = Option.Int("batch", "pairs of the induction task", 16).Check(b => b is >= 1 and <= 1024, "must be in [1, 1024]");
    private static readonly Option<int?> Half = Option.Of<int?>("half", "tokens of each half of an induction pair", null, "n_ctx/2, at most 128",
        (n, v) => Option.ParseInt(n, v));
    private static readonly Option<ulong> Seed = Option.ULong("seed", "seed of the induction pairs", 1);
    private static readonly Option<string?> Clean = Option.OptionalText("clean", "the clean prompt: text in the checkpoint's tokenizer, or token ids \"3 17 5\" without one", "none");
    private static readonly Option<string?> Corrupt = Option.OptionalText("corrupt", "the corrupted prompt, the same number of tokens as --clean", "none");
    private static readonly Option<string?> Answer = Option.OptionalText("answer", "the token the clean prompt should predict next (one token, e.g. \" x\")", "none");
    private static readonly Option<string?> Wrong = Option.OptionalText("wrong", "the token to compare it with (one token; the corrupted prompt's answer)", "none");
    private static readonly Option<string?> Pairs = Option.OptionalText("pairs",
        "JSON lines of pairs, one per line: {\"clean\": \"…\" or [ids], \"corrupt\": …, \"answer\": \" x\" or id, \"wrong\": …, \"position\": -1 (optional: where the metric reads, from the end if negative)}",
        "none");
    // text, checked when the verb runs (as train's --optimizer): parsing only stores what was typed
    private static readonly Option<string> Metric = Option.Text("metric", "logit_diff (answer − wrong logit) or answer_loss (−log p(answer))", "logit_diff").Choices("logit_diff", "answer_loss");
    private static readonly Option<string?> Sites = Option.OptionalText("sites",
        "grids to patch, comma-separated: resid_pre, attn_out, mlp_out, resid_post (layer × position), z (layer × head), z_by_pos (layer × head × position), q, k, v, pattern (layer × head)",
        "all that the model has").Shown("SITE,…");
    private static readonly Option<string> Receivers = Option.Text("receivers",
        "path patching's receiving heads as L.H pairs (1.0,1.3), 'auto' (the two heads of layers ≥ 1 whose z patching matters most) or 'none'", "auto");
    private static readonly Option<bool> Noising = Option.Flag("noising",
        "the reverse experiment: patch corrupted activations into the clean run (the pairs' prompts swapped), so a cell of 1 means that one site breaks the behaviour alone");
    private static readonly Option<bool> NoExact = Option.Flag("no-exact", "skip exact activation patching (a forward pass per cell)");
    private static readonly Option<bool> NoAttribution = Option.Flag("no-attribution", "skip attribution patching (one backward pass for every cell)");
    private static readonly Option<string?> Out = Option.OptionalText("out", "folder for patch.json, the PNGs and patch.html", "<checkpoint stem>.patch/");
    private static readonly Option<bool> Json = Option.Flag("json", "print patch.json to stdout instead of the summary");

    internal static Options Declare() =>
        new Options("patch", "patch: causal interventions on a checkpoint. Activation patching (a clean activation patched into the corrupted run; each cell\n" +
                             "normalised so 0 = corrupted, 1 = clean) of the residual stream by layer × position and of each head's z, q, k, v and pattern,\n" +
                             "attribution patching (the gradient estimate of the same, with its correlation to exact patching), path patching into the\n" +
                             "receivers' q, k and v from every earlier head, the logit lens and direct logit attribution. Inputs: --task induction,\n" +
                             "--clean/--corrupt/--answer/--wrong, or --pairs FILE. Writes patch.json, PNG heatmaps and patch.html.",
            SharedOptions.Checkpoint, Task, Batch, Half, Seed, Clean, Corrupt, Answer, Wrong, Pairs, Metric, Sites, Receivers, Noising, NoExact, NoAttribution,
            Out, Json, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        var clock = Stopwatch.StartNew();
        string ckpt = o.Get(SharedOptions.Checkpoint);
        CheckInputOptions(o);
        string receivers = o.Get(Receivers);
        var parsedReceivers = receivers is "auto" or "none" ? null : ParseReceivers(receivers);
        string? outOption = o.Get(Out);
        var siteNames = o.Get(Sites) is { } ss ? SiteNames(ss) : null;
        bool exact = !o.Get(NoExact), attribution = !o.Get(NoAttribution);
        if (!exact && !attribution && receivers == "none")
            throw new UsageError("--no-exact, --no-attribution and --receivers none leave nothing to patch: drop one of them");
        if (!exact && !attribution && parsedReceivers == null)
            throw new UsageError("--receivers auto picks the heads from z patching, which --no-exact --no-attribution skips: name the receivers (--receivers 1.0)");

        var loaded = Checkpoint.Load(ckpt);
        var model = loaded.Model;
        var c = model.Config;
        if (c.NLayers == 0) throw new UserError($"'{ckpt}' is a zero-layer model: it has no blocks to patch");
        var tokenizer = loaded.TokenizerJson is { } tj ? Tokenizers.FromJson(tj) : null;
        var inputs = new PatchInputs(tokenizer, c);
        var prompts = Prompts(o, inputs, c, ckpt);
        var specs = siteNames?.Select(n => Spec(n).Validate(c)).ToList();
        if (parsedReceivers != null)
            foreach (var (l, h) in parsedReceivers)
            {
                if (l >= c.NLayers || h >= c.NHeads)
                    throw new UserError($"--receivers: L{l}H{h} does not exist: the model has layers 0–{c.NLayers - 1} and heads 0–{c.NHeads - 1}");
                if (l == 0) throw new UserError($"--receivers: L{l}H{h} is in layer 0, which no head writes into: give a head of layer 1 or above");
            }

        var options = new PatchingOptions
        {
            Specs = specs, Metric = MetricNamed(o.Get(Metric)), Exact = exact, Attribution = attribution,
            Receivers = parsedReceivers, AutoReceivers = receivers == "none" ? 0 : 2, Noising = o.Get(Noising),
        };
        // every input checked: the folder last, so a mistake above leaves no folder behind, and before the analysis, so an
        // unwritable one is reported now rather than after it
        string dir = ReportFolder.Prepare(outOption ?? Checkpoint.Stem(ckpt) + ".patch", out bool created);
        try { Report(stdout, ckpt, model, prompts, inputs.Text, options, dir, o.Get(Json), clock); }
        catch { ReportFolder.RemoveIfUnused(dir, created); throw; }
        return 0;
    }

    /// <summary>Runs the analyses with a live bar in a terminal, writes the report and prints the summary (or patch.json).</summary>
    internal static void Report(TextWriter stdout, string ckpt, GptModel model, PatchPrompts prompts, TokenText text, PatchingOptions options,
        string dir, bool json, Stopwatch clock)
    {
        var (result, written) = ProgressView.Run(stdout, "patch", sink =>
        {
            var r = PatchingAnalysis.Run(model, prompts, options with { Progress = (done, total, stage) => sink.Report(done, total, stage) });
            sink.Report(1, 1, "plots");
            return (r, PatchReport.Write(r, ckpt, text, dir));
        });
        if (json) stdout.WriteLine(written.Json);
        else
        {
            stdout.Write(PatchSummary.Format(result, text));
            stdout.WriteLine(ConsoleLine.Wrap($"wrote {written.JsonPath}, {written.Plots} plots and {written.HtmlPath} in {clock.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s", 6));
        }
    }

    /// <summary>Exactly one source of pairs; the options of the others are errors, not silently ignored.</summary>
    private static void CheckInputOptions(Options o)
    {
        bool task = o.Has(Task), text = o.Has(Clean) || o.Has(Corrupt) || o.Has(Answer) || o.Has(Wrong), pairs = o.Has(Pairs);
        if ((task ? 1 : 0) + (text ? 1 : 0) + (pairs ? 1 : 0) > 1)
            throw new UsageError("give one source of pairs: --task induction, --clean/--corrupt/--answer/--wrong, or --pairs FILE");
        if (task && o.Get(Task) != "induction") throw new UsageError($"--task '{o.Get(Task)}' is not a task: use --task induction");
        if (text)
            foreach (var opt in new[] { Clean, Corrupt, Answer, Wrong })
                if (!o.Has(opt)) throw new UsageError($"--clean, --corrupt, --answer and --wrong go together: --{opt.Name} is missing");
        if (!task && (text || pairs))
            foreach (var opt in new Option[] { Batch, Half, Seed })
                if (o.Has(opt)) throw new UsageError($"--{opt.Name} sets the induction task's pairs: use it with --task induction");
    }

    private static PatchPrompts Prompts(Options o, PatchInputs inputs, ModelConfig c, string ckpt)
    {
        if (o.Get(Pairs) is { } file) return inputs.File(file);
        if (o.Get(Clean) is { } clean) return inputs.Single(clean, o.Get(Corrupt)!, o.Get(Answer)!, o.Get(Wrong)!);
        if (!o.Has(Task) && inputs.Text.HasTokenizer)
            throw new UsageError($"'{ckpt}' was trained on text: give --clean/--corrupt/--answer/--wrong, --pairs FILE, or --task induction");
        int half = o.Get(Half) ?? HeadProbe.HalfFor(c.NCtx);
        // checked here, not at parse time: the lower bound matters only when the induction task runs
        if (half < 2) throw new UserError($"--half {half}: an induction pair needs halves of at least 2 tokens (one to repeat, one to predict): use --half ≥ 2");
        if (2 * half > c.NCtx) throw new UserError($"--half {half}: an induction pair is 2 × {half} tokens but the model reads at most n_ctx = {c.NCtx}: use --half ≤ {c.NCtx / 2}");
        return PatchPrompts.Induction(c.DVocab, o.Get(Batch), half, o.Get(Seed));
    }

    /// <summary>"resid_pre,z" → the names, checked against the known grids (a UsageError for an unknown one).</summary>
    private static List<string> SiteNames(string s)
    {
        var names = s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct().ToList();
        if (names.Count == 0) throw new UsageError("--sites is empty: give grids such as resid_pre,z");
        foreach (string n in names)
        {
            try { Spec(n); }
            catch (UserError) { throw new UsageError($"--sites: unknown site '{n}': use resid_pre, attn_out, mlp_out, resid_post, z, z_by_pos, q, k, v or pattern"); }
        }
        return names;
    }

    /// <summary>A grid's name as patch.json writes it (<see cref="PatchSpec.Name"/>) → its spec.</summary>
    private static PatchSpec Spec(string name)
    {
        bool byPos = name.EndsWith("_by_pos", StringComparison.Ordinal);
        var site = PatchSpec.ParseSite(byPos ? name[..^"_by_pos".Length] : name);
        if (byPos && site != PatchSite.Z) throw new UserError($"{name}: only z is patched by layer × head × position");
        // the one list of residual sites (resid_post included), so every site ParseSite accepts gets its own axes
        return new PatchSpec(site, PatchSpec.IsResidualSite(site) ? PatchAxes.LayerPos : byPos ? PatchAxes.LayerHeadPos : PatchAxes.LayerHead);
    }

    /// <summary>"1.2,1.3" (or "L1H2") → [(1, 2), (1, 3)].</summary>
    internal static List<(int Layer, int Head)> ParseReceivers(string s) => HeadPairs.Parse(s, "receivers", "1.0,1.3", " (or auto, none)");

    private static PatchMetric MetricNamed(string v) => v is "logit_diff" or "answer_loss" ? PatchMetric.Named(v)
        : throw new UsageError($"--metric '{v}' is not a metric: use logit_diff or answer_loss");
}
