using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Train;
using MiniGpt.Train.Report;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// A tiny 2-layer attention-only model without LayerNorm (so path expansion applies), trained in-process
/// with --track-circuits once for every test of <see cref="CircuitsVerbTests"/>.
/// </summary>
public sealed class TrackedRun : IDisposable
{
    public const int Steps = 300, EvalInterval = 100, Layers = 2, Heads = 2;
    public string Dir { get; } = TestPaths.TempDir("circuits-verb");
    public string Checkpoint => Path.Combine(Dir, "model.safetensors");
    public (int Code, string Out, string Err) Train { get; }

    public TrackedRun()
    {
        Train = TestPaths.Cli("train", "--track-circuits", "--out", Checkpoint, "--n-layers", $"{Layers}", "--d-model", "32", "--n-heads", $"{Heads}",
            "--n-ctx", "16", "--normalization", "none", "--batch-size", "16", "--steps", $"{Steps}", "--eval-interval", $"{EvalInterval}",
            "--log-interval", $"{EvalInterval}", "--eval-batches", "2", "--lr", "1e-2");
    }

    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

/// <summary>train --track-circuits and the circuits verb: the log, circuits.json, the PNGs, report.html, and one-line errors.</summary>
public class CircuitsVerbTests(TrackedRun run) : IClassFixture<TrackedRun>
{
    private static void AssertScore(JsonElement head, string name, double lo = 0, double hi = 1)
    {
        double v = head.GetProperty(name).GetDouble();
        Assert.True(v >= lo - 1e-9 && v <= hi + 1e-9, $"{head.GetProperty("name")} {name} = {v} is outside [{lo}, {hi}]");
    }

    [Fact]
    public void TrackedTrainingLogsEveryEvaluation()
    {
        Assert.True(run.Train.Code == 0, run.Train.Err);
        var lines = run.Train.Out.Split('\n');
        Assert.Equal(TrackedRun.Steps / TrackedRun.EvalInterval + 1, lines.Count(l => l.Contains("| val "))); // step 0 and every interval
        // under each evaluation, a line names the top head of every role-giving score: "           | prev L0H1 0.93 | dup L1H0 0.02 | ind L1H1 0.88"
        // (wrapped to 80 columns: a continuation line starts with the same indent and holds the scores after the break)
        var progress = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].Contains("| prev ")) continue;
            string l = lines[i].TrimEnd('\r');
            for (int n = i + 1; n < lines.Length && lines[n].StartsWith("             | ") && !lines[n].Contains("| val ") && !lines[n].Contains("| prev "); n++)
                l += lines[n].TrimEnd('\r')[12..];
            progress.Add(l);
        }
        Assert.Equal(TrackedRun.Steps / TrackedRun.EvalInterval + 1, progress.Count);
        string suffix = string.Concat(HeadScoreSet.Default.RoleScores.Select(s => $@" \| {s.Header} L\dH\d \d\.\d\d")) + "$";
        Assert.Contains(@" \| prev L\dH\d \d\.\d\d \| dup L\dH\d \d\.\d\d \| ind L\dH\d \d\.\d\d \| cur L\dH\d \d\.\d\d \| cur-sup L\dH\d \d\.\d\d \| prev-sup L\dH\d \d\.\d\d$", suffix);
        Assert.All(progress, l => Assert.Matches(suffix, l));

        var log = CircuitsLog.Read(CircuitsLog.PathFor(run.Checkpoint));
        Assert.Equal(new long[] { 0, 100, 200, 300 }, log.Select(e => e.Step).ToArray());
        Assert.Null(log[0].Loss);
        foreach (var e in log)
        {
            Assert.NotNull(e.ValLoss);
            Assert.Equal(TrackedRun.Layers, e.Scores["induction"].Length);
            foreach (var grid in new[] { e.Scores["previous_token"], e.Scores["duplicate_token"], e.Scores["induction"], e.Scores["prefix_matching"], e.Scores["copying"] })
                Assert.All(grid.SelectMany(r => r), v => Assert.InRange(v, 0, 1));
        }
    }

    [Fact]
    public void CircuitsWritesEveryHeadPlotsAndAReportThatEmbedsThem()
    {
        string outDir = Path.Combine(run.Dir, "report");
        var r = TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--out", outDir, "--batches", "2");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("head  role", r.Out);
        Assert.Contains("ablating", r.Out);

        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "circuits.json"))).RootElement;
        var heads = json.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(TrackedRun.Layers * TrackedRun.Heads, heads.Count);
        var names = heads.Select(h => h.GetProperty("name").GetString()!).ToList();
        Assert.Equal(new[] { "L0H0", "L0H1", "L1H0", "L1H1" }, names);
        foreach (var h in heads)
        {
            foreach (var s in new[] { "previous_token", "duplicate_token", "induction", "prefix_matching", "copying" }) AssertScore(h, s);
            AssertScore(h, "ov_eigenvalue_copying", -1, 1);
            Assert.True(h.GetProperty("ablation").GetProperty("repeat_factor").GetDouble() > 0);
            Assert.Equal(6, h.GetProperty("spectra").EnumerateObject().Count());
        }
        Assert.Equal(16, json.GetProperty("loss_by_position").GetArrayLength());
        Assert.Equal(TrackedRun.Layers + 1, json.GetProperty("coding_rate").GetProperty("after_embedding_then_each_layer").GetArrayLength());
        // no LayerNorm, attention-only, 2 layers: direct + 2 + 2 single-head + 4 virtual-head terms + bias
        Assert.Equal(1 + 4 + 4 + 1, json.GetProperty("path_expansion").GetArrayLength());
        Assert.Equal(4, json.GetProperty("composition").GetProperty("pairs").GetArrayLength());
        Assert.Equal(4, json.GetProperty("training_log").GetProperty("evaluations").GetInt32());

        var plots = json.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).ToList();
        foreach (string expected in new[] { "eigenvalues_L1H1.png", "composition_k_minus_baseline.png", "composition_v_raw.png", "loss_by_position.png",
                     "training_scores.png", "training_induction.png", "embedding_cosines.png" })
            Assert.Contains(expected, plots);
        Assert.Contains(plots, p => p.StartsWith("attention_L", StringComparison.Ordinal));
        string html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        foreach (string p in plots)
        {
            var bytes = File.ReadAllBytes(Path.Combine(outDir, p));
            Assert.True(bytes.AsSpan().StartsWith(PlotImage.Signature), $"{p} is not a PNG");
            Assert.Contains($"src=\"data:image/png;base64,{Convert.ToBase64String(bytes)}\"", html);
        }
        Assert.Contains("<table>", html);
        foreach (string n in names) Assert.Contains($"<b>{n}</b>", html);
        // self-contained: scripts only inline (ReportPageTests runs them) and nothing fetched from elsewhere
        Assert.Contains("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotMatch("<script[^>]*\\ssrc=", html);
        Assert.DoesNotMatch("(src|href)=\"(?!data:|#)", html);
        ReportPageTests.AssertNotesFollowTheNumbers(outDir);
    }

    [Fact]
    public void JsonFlagPrintsTheFileContents()
    {
        string outDir = Path.Combine(run.Dir, "json");
        var r = TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--out", outDir, "--json", "--batches", "1", "--heads", "1.0,0.1");
        Assert.True(r.Code == 0, r.Err);
        var printed = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(File.ReadAllText(Path.Combine(outDir, "circuits.json")).Trim(), r.Out.Trim());
        Assert.Equal(new[] { "L1H0", "L0H1" }, printed.GetProperty("attention_example").GetProperty("heads").EnumerateArray().Select(x => x.GetString()).ToArray());
        Assert.True(File.Exists(Path.Combine(outDir, "attention_L1H0.png")) && File.Exists(Path.Combine(outDir, "attention_L0H1.png")));
    }

    /// <summary>The README's program: MiniGpt alone scores, ablates and runs the whole analysis, and gets what the verb prints.</summary>
    [Fact]
    public void AProgramUsingOnlyTheLibraryReadsTheSameCircuitsAsTheVerb()
    {
        var loaded = Checkpoint.Load(run.Checkpoint);
        var model = loaded.Model;
        var scores = HeadScores.Compute(model);
        var data = EvalData.Open("induction", loaded, batchSize: 32, maxBatches: 4);
        var clean = HeadAblation.Measure(model, data, []);
        var ablated = HeadAblation.Measure(model, data, [(1, 1)]);
        var result = CircuitsAnalysis.Run(run.Checkpoint, loaded, data);

        var r = TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--json", "--batch-size", "32", "--batches", "4", "--out", Path.Combine(run.Dir, "library"));
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        var heads = json.GetProperty("heads").EnumerateArray().ToList();
        foreach (var h in heads)
        {
            int l = h.GetProperty("layer").GetInt32(), k = h.GetProperty("head").GetInt32();
            foreach (var s in HeadScoreSet.Default) Assert.Equal(scores[s.Name][l][k], h.GetProperty(s.Name).GetDouble());
            var roles = h.GetProperty("roles").EnumerateArray().Select(x => x.GetString()!).ToArray();
            Assert.Equal(roles.Length > 0 ? roles[0] : "", scores.Labels[l][k]);
            Assert.Equal(roles, result.Heads[l * TrackedRun.Heads + k].Roles);
        }
        Assert.Equal(clean.Repeat, json.GetProperty("ablation").GetProperty("clean").GetProperty("repeat_half").GetDouble());
        Assert.Equal(ablated.Repeat, heads[1 * TrackedRun.Heads + 1].GetProperty("ablation").GetProperty("losses").GetProperty("repeat_half").GetDouble());
        Assert.NotEqual(clean.Repeat, ablated.Repeat);
        Assert.Equal(json.GetProperty("headline").GetProperty("text").GetString(), result.Headline);
        Assert.Equal(json.GetProperty("icl_score").GetProperty("score").GetDouble(), result.IclScore);
    }

    [Fact]
    public void ZeroAblationThroughHookZEqualsZeroingTheHeadsOutputWeights()
    {
        // attn_out = Σ_h z_h·W_O[h] + b_O, so zeroing z_h through the hook must give the model whose W_O[h] is 0
        var loaded = Checkpoint.Load(run.Checkpoint);
        var m = loaded.Model;
        var c = m.Config;
        var rng = new Rng(5);
        int B = 3, T = c.NCtx;
        var x = Enumerable.Range(0, B * T).Select(_ => rng.NextInt(c.DVocab)).ToArray();
        var y = Enumerable.Range(0, B * T).Select(_ => rng.NextInt(c.DVocab)).ToArray();
        float hooked;
        using (HeadAblation.ZeroHead(m, 1, 1)) hooked = m.Forward(x, y, B, T);
        float clean = m.Forward(x, y, B, T);
        m.Params["blocks.1.attn.W_O"].Span.Slice(1 * c.DHead * c.DModel, c.DHead * c.DModel).Clear();
        float direct = m.Forward(x, y, B, T);
        Assert.Equal(direct, hooked, 5);
        Assert.NotEqual(clean, hooked);
    }

    [Fact]
    public void OneLayerCharModelShowsTokensAsTextAndSkipTrigrams()
    {
        string dir = TestPaths.TempDir("circuits-char");
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat.\n", 40)));
        var tok = CharTokenizer.FromText(File.ReadAllText(text));
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = tok.VocabSize }, 1);
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, tok.ToJson());

        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", ckpt), 2, "--data");
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--data", text, "--json");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        Assert.True(json.GetProperty("layer_norm_folded").GetBoolean());
        Assert.Equal(2, json.GetProperty("skip_trigrams").GetArrayLength());
        Assert.False(json.TryGetProperty("path_expansion", out _));
        Assert.Contains(json.GetProperty("notes").EnumerateArray(), n => n.GetString()!.StartsWith("path expansion needs a model without LayerNorm", StringComparison.Ordinal));
        // the attention example draws from the 12 characters, shown as text with whitespace made visible
        var shown = json.GetProperty("attention_example").GetProperty("text").EnumerateArray().Select(t => t.GetString()!).ToList();
        Assert.All(shown, s => Assert.True(s.Length == 1 && !char.IsWhiteSpace(s[0]) && "the cat sat on the mat.\n␣↵".Contains(s[0]), $"'{s}'"));
        Assert.Equal("a␣b↵c⇥U+0007", TokenText.Visible("a b\nc\t\a"));
        string html = File.ReadAllText(Path.Combine(dir, "m.circuits", "report.html"));
        Assert.Contains("L0H1", html);
        Assert.Contains("…", html);
        Directory.Delete(dir, true);
    }

    /// <summary>A BPE checkpoint samples and reports with no tokenizer flag: its tokens appear as their text.</summary>
    [Fact]
    public void BpeCheckpointSamplesAndShowsWordPieces()
    {
        string dir = TestPaths.TempDir("circuits-bpe");
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat.\nthe dog sat on the log.\n", 30)));
        string ckpt = Path.Combine(dir, "m.safetensors");
        var t = TestPaths.Cli("train", "--data", text, "--tokenizer", "bpe:280", "--n-layers", "1", "--d-model", "16", "--n-heads", "2",
            "--n-ctx", "16", "--batch-size", "4", "--steps", "2", "--eval-batches", "1", "--out", ckpt);
        Assert.True(t.Code == 0, t.Err);
        Assert.Contains("bits/byte", t.Out);
        var s = TestPaths.Cli("sample", "--checkpoint", ckpt, "--prompt", "the cat", "--tokens", "10");
        Assert.True(s.Code == 0, s.Err);
        Assert.StartsWith("the cat", s.Out);
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--data", text, "--json", "--batches", "1");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal("bpe:280", json.GetProperty("tokenizer").GetString());
        var shown = json.GetProperty("attention_example").GetProperty("text").EnumerateArray().Select(x => x.GetString()!).ToList();
        // pieces of the text ("␣the", "at", …) drawn from the data's tokens, whitespace made visible
        string visible = TokenText.Visible(File.ReadAllText(text));
        Assert.Contains(shown, x => x.Length > 1);
        Assert.All(shown, x => Assert.Contains(x, visible));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void ZeroLayerModelReportsTheBigramKl()
    {
        string dir = TestPaths.TempDir("circuits-zero");
        var m = GptModel.Create(new ModelConfig { NLayers = 0, DModel = 16, NHeads = 1, DHead = 16, NCtx = 16, DVocab = 20, AttnOnly = true, NormalizationType = null }, 2);
        string ckpt = Path.Combine(dir, "z.safetensors");
        Checkpoint.Save(ckpt, m, null);
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--json", "--batches", "2");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(0, json.GetProperty("heads").GetArrayLength());
        Assert.True(json.GetProperty("bigram_kl").GetDouble() > 0);
        Assert.True(File.Exists(Path.Combine(dir, "z.circuits", "report.html")));
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", ckpt, "--heads", "0.0"), 1, "no heads");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void BadInputGivesOneLineErrors()
    {
        string dir = TestPaths.TempDir("circuits-bad");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits"), 2, "--checkpoint");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", Path.Combine(dir, "none.safetensors")), 1, "does not exist");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--heads", "one.two"), 2, "--heads");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--heads", "2.0"), 1, "L2H0 does not exist");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--data", Path.Combine(dir, "none.bin")), 1, "does not exist");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--data", Path.Combine(dir, "text.txt")), 1, "does not exist");
        string file = Path.Combine(dir, "file");
        File.WriteAllText(file, "");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--out", file), 1, "is a file");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", run.Checkpoint, "--batches", "0"), 2, "--batches");
        string log = Path.Combine(dir, "broken.safetensors");
        File.Copy(run.Checkpoint, log);
        // a line without scores is an entry without them; a score that is not [layer][head], or a line that is not JSON, is damaged
        File.WriteAllText(CircuitsLog.PathFor(log), "{\"step\": 0}\n{\"step\": 100, \"induction\": \"high\"}\n");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", log, "--batches", "1"), 1, "line 2");
        File.WriteAllText(CircuitsLog.PathFor(log), "{\"step\": 0}\nnot json\n");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", log, "--batches", "1"), 1, "line 2");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--track-circuits", "--n-layers", "0", "--out", Path.Combine(dir, "z.safetensors")), 1, "--track-circuits");
        Directory.Delete(dir, true);
    }
}
