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
            var lines = r.Out.Split('\n').Where(l => l.StartsWith("  --", StringComparison.Ordinal)).ToList();
            foreach (string name in declare().DeclaredNames)
            {
                string? line = lines.FirstOrDefault(l => l.StartsWith($"  --{name} ", StringComparison.Ordinal));
                Assert.True(line != null, $"'{verb} --help' does not list --{name}");
                bool valued = line!.StartsWith($"  --{name} VALUE", StringComparison.Ordinal);
                if (valued)
                    Assert.True(line.Contains("[default: ") || line.EndsWith("[required]"), $"'{verb} --help': --{name} shows no default: {line}");
                // what the help promises, the parser accepts
                var parse = Record.Exception(() => declare().Parse(valued ? [$"--{name}", "1"] : [$"--{name}"]));
                Assert.True(parse == null, $"{verb} --{name}: {parse?.Message}");
            }
            Assert.Contains(lines, l => l.StartsWith("  --help", StringComparison.Ordinal));
        }
        Assert.Contains("[default: 1337]", TestPaths.Cli("train", "--help").Out);
        Assert.Contains("--checkpoint VALUE", TestPaths.Cli("eval", "--help").Out);
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
        var model = Regex.Match(t.Out, @"model: .*, n_ctx (\d+), .* ([\d,]+) parameters");
        Assert.True(model.Success, t.Out);
        Assert.Equal(long.Parse(model.Groups[2].Value.Replace(",", "")), json.GetProperty("params").GetInt64());
        Assert.Equal(int.Parse(model.Groups[1].Value), json.GetProperty("T").GetInt32());
        Assert.Contains($"batch {json.GetProperty("B").GetInt32()}, ", t.Out);
        Directory.Delete(dir, true);
    }
}
