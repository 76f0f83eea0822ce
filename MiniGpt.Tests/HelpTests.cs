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
}
