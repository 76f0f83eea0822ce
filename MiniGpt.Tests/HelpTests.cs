using System.Text.Json;
using System.Text.RegularExpressions;
using MiniGpt.Train;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Every verb's --help lists every option it accepts, each valued one with its default or marked required.</summary>
public class HelpTests
{
    [Fact]
    public void EveryVerbsHelpListsEveryOptionWithItsDefault()
    {
        Assert.NotEmpty(Cli.Verbs);
        foreach (var (verb, declare) in Cli.Verbs)
        {
            var r = TestPaths.Cli(verb, "--help");
            Assert.True(r.Code == 0, $"{verb} --help: {r.Err}");
            // an option's entry: its line, and the next one when a long value name puts the help there
            var all = r.Out.Split('\n');
            var lines = all.Select((l, i) => l.StartsWith("  --", StringComparison.Ordinal) && i + 1 < all.Length && all[i + 1].StartsWith("      ", StringComparison.Ordinal)
                    ? l + " " + all[i + 1].Trim() : l)
                .Where(l => l.StartsWith("  --", StringComparison.Ordinal)).ToList();
            foreach (var opt in declare().Declarations)
            {
                string name = opt.Name;
                string? line = lines.FirstOrDefault(l => l.StartsWith($"  --{name} ", StringComparison.Ordinal));
                Assert.True(line != null, $"'{verb} --help' does not list --{name}");
                bool valued = !opt.IsFlag;
                if (valued)
                {
                    Assert.StartsWith($"  --{name} {opt.ValueName} ", line);
                    Assert.True(line!.Contains("[default: ") || line.EndsWith("[required]"), $"'{verb} --help': --{name} shows no default: {line}");
                }
                // what the help promises, the parser accepts
                var parse = Record.Exception(() => declare().Parse(valued ? [$"--{name}", "1"] : [$"--{name}"]));
                Assert.True(parse == null, $"{verb} --{name}: {parse?.Message}");
            }
            Assert.Contains(lines, l => l.StartsWith("  --help", StringComparison.Ordinal));
        }
        Assert.Contains("[default: 1337]", TestPaths.Cli("train", "--help").Out);
        Assert.Contains("--checkpoint PATH", TestPaths.Cli("eval", "--help").Out);
        Assert.Contains("[required]", TestPaths.Cli("eval", "--help").Out);
    }

    [Fact]
    public void BenchWithNoOptionsTimesTheStepOfTheModelTrainTrainsWithNone()
    {
        // one declaration of the shape options and the batch size, with one set of defaults, in both verbs' help
        var train = TestPaths.Cli("train", "--help").Out.Split('\n');
        var bench = TestPaths.Cli("bench", "--help").Out.Split('\n');
        static string Line(string[] help, string name) => Regex.Replace(help.Single(l => l.StartsWith($"  --{name} ", StringComparison.Ordinal)), " +", " ");
        // bench always runs the induction task, so it states that task's defaults where train's depend on the data
        string[] byTask = ["n-ctx", "d-vocab", "attn-only"];
        foreach (string name in ModelOptions.All.Select(o => o.Name).Append("batch-size").Except(byTask))
            Assert.Equal(Line(train, name), Line(bench, name));
        Assert.EndsWith("[default: 32]", Line(bench, "n-ctx"));
        Assert.Contains("32 for induction", Line(train, "n-ctx"));
        Assert.EndsWith("[default: max(64, 2·n_ctx)]", Line(bench, "d-vocab"));
        Assert.Contains("--attn-only=false", Line(bench, "attn-only"));

        // and the same model: bench's step is that of train's default run
        string dir = TestPaths.TempDir("bench-default");
        var t = TestPaths.Cli("train", "--steps", "1", "--out", Path.Combine(dir, "m.safetensors"), "--threads", "1");
        Assert.True(t.Code == 0, t.Err);
        var b = TestPaths.Cli("bench", "--steps", "1", "--warmup", "0", "--json", "--threads", "1");
        Assert.True(b.Code == 0, b.Err);
        var json = JsonDocument.Parse(b.Out).RootElement;
        var model = Regex.Match(t.Out, @"model: .*, n_ctx (\d+), .* ([\d,]+) parameters", RegexOptions.Singleline); // wrapped at 80 columns
        Assert.True(model.Success, t.Out);
        Assert.Equal(long.Parse(model.Groups[2].Value.Replace(",", "")), json.GetProperty("params").GetInt64());
        Assert.Equal(int.Parse(model.Groups[1].Value), json.GetProperty("T").GetInt32());
        Assert.Contains($"batch {json.GetProperty("B").GetInt32()}, ", t.Out);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void EveryValueIsNamedByItsTypeAndEveryChoiceShownParses()
    {
        foreach (var (verb, declare) in Cli.Verbs)
            foreach (var opt in declare().Declarations.Where(o => !o.IsFlag))
            {
                string shown = opt.ValueName!;
                Assert.False(shown is "VALUE" or "" , $"{verb} --{opt.Name} has no value name");
                var type = opt.GetType().GetGenericArguments()[0];
                type = Nullable.GetUnderlyingType(type) ?? type;
                if (type == typeof(int) || type == typeof(ulong)) Assert.True(shown == "N", $"{verb} --{opt.Name}: {shown}");
                if (type == typeof(float) || type == typeof(double)) Assert.True(shown == "FLOAT", $"{verb} --{opt.Name}: {shown}");
                // a list of choices {a|b}: each one shown is accepted by the parser (what it means is the verb's to check)
                if (shown.StartsWith('{'))
                    foreach (string choice in shown[1..shown.IndexOf('}')].Split('|'))
                    {
                        var e = Record.Exception(() => declare().Parse([$"--{opt.Name}", choice]));
                        Assert.True(e == null, $"{verb} --{opt.Name} {choice}: {e?.Message}");
                    }
            }
        string train = TestPaths.Cli("train", "--help").Out;
        foreach (string s in new[] { "--steps N", "--lr FLOAT", "--data PATH", "--resume PATH", "--init-from PATH", "--optimizer {adamw|sgd}", "--normalization {LN|none}" })
            Assert.Contains(s, train);
        Assert.Contains("--heads L.H,…", TestPaths.Cli("circuits", "--help").Out);
        Assert.Contains("--slide {exact|half}", TestPaths.Cli("sample", "--help").Out);
        Assert.Contains("--to {minigpt|hf}", TestPaths.Cli("convert", "--help").Out);
    }

    [Fact]
    public void AMistypedOptionGetsTheNearestNameInItsOneLineError()
    {
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--stpes", "5"), 2, "unknown option --stpes for 'train': did you mean --steps?");
        TestPaths.AssertOneLineError(TestPaths.Cli("eval", "--chekpoint", "m.safetensors"), 2, "did you mean --checkpoint?");
        TestPaths.AssertOneLineError(TestPaths.Cli("train", "--batchsize", "5"), 2, "did you mean --batch-size?");
        TestPaths.AssertOneLineError(TestPaths.Cli("sample", "--temprature", "0"), 2, "did you mean --temperature?");
        // nothing near: no guess, only the pointer to --help
        var far = TestPaths.Cli("train", "--zebra", "1");
        TestPaths.AssertOneLineError(far, 2, "unknown option --zebra for 'train' (see 'train --help')");
        Assert.DoesNotContain("did you mean", far.Err);
        Assert.Equal(1, MiniGpt.Train.EditDistance.Of("stpes", "steps"));
        Assert.Equal(3, MiniGpt.Train.EditDistance.Of("kitten", "sitting"));
    }

    [Fact]
    public void EvalHelpNamesPreparedFoldersAndEveryJsonField()
    {
        var r = TestPaths.Cli("eval", "--help");
        string summary = r.Out[..r.Out.IndexOf("options:", StringComparison.Ordinal)];
        Assert.Contains("prepare", summary);
        // every key eval --json prints is named by --json's help
        string dir = TestPaths.TempDir("eval-help");
        var m = MiniGpt.Model.GptModel.Create(new MiniGpt.Model.ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, NCtx = 16, DVocab = 64, AttnOnly = true }, 1);
        string ckpt = Path.Combine(dir, "m.safetensors");
        MiniGpt.Checkpoints.Checkpoint.Save(ckpt, m, null);
        var e = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", "induction", "--json", "--threads", "1");
        Assert.True(e.Code == 0, e.Err);
        string jsonHelp = r.Out.Split('\n').Single(l => l.StartsWith("  --json", StringComparison.Ordinal));
        foreach (var p in JsonDocument.Parse(e.Out).RootElement.EnumerateObject())
            Assert.True(jsonHelp.Contains(p.Name), $"eval --help's --json does not name '{p.Name}': {jsonHelp}");
        Directory.Delete(dir, true);
    }
}
