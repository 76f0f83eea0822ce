using MiniGpt.Train;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Typed options: each value parsed once, by its declaration, into its type, with one-line errors that name the option.</summary>
public class OptionTests
{
    private static readonly Option<int> Layers = Option.Int("n-layers", "blocks", 2);
    private static readonly Option<int> Ctx = Option.Int("n-ctx", "context", -1, shown: "from the data").Check(n => n > 0, "must be > 0");
    private static readonly Option<float> Lr = Option.Float("lr", "learning rate", 0);
    private static readonly Option<ulong> Seed = Option.ULong("seed", "seed", 1337);
    private static readonly Option<bool?> AttnOnly = Option.OptionalFlag("attn-only", "no MLPs");
    private static readonly Option<bool> Json = Option.Flag("json", "JSON");
    private static readonly Option<string> Checkpoint = Option.Required("checkpoint", "a checkpoint", "F");

    private static Options Declare() => new("try", "try: a verb for tests", Layers, Ctx, Lr, Seed, AttnOnly, Json, Checkpoint);

    private static string ErrorOf(params string[] args) => Assert.Throws<UsageError>(() => Declare().Parse(args)).Message;

    [Fact]
    public void AValueThatIsNotOfItsOptionsTypeIsAUsageErrorNamingIt()
    {
        Assert.Equal("option --n-layers expects an integer, got 'two'", ErrorOf("--n-layers", "two"));
        Assert.Equal("option --n-layers expects an integer, got '2.5'", ErrorOf("--n-layers=2.5"));
        Assert.Equal("option --lr expects a number, got 'fast'", ErrorOf("--lr", "fast"));
        Assert.Equal("option --lr expects a number, got 'NaN'", ErrorOf("--lr", "NaN"));
        Assert.Equal("option --seed expects a non-negative integer, got '-1'", ErrorOf("--seed", "-1"));
        Assert.Equal("option --attn-only expects true or false, got 'maybe'", ErrorOf("--attn-only=maybe"));
        Assert.Equal("--n-ctx must be > 0, got 0", ErrorOf("--n-ctx", "0"));
        // the form of the command line is checked before any value: the first mistake typed is the one named
        Assert.Equal("unknown option --bogus for 'try' (see 'try --help')", ErrorOf("--bogus", "1", "--lr", "fast"));
        Assert.Equal("option --lr needs a value (see 'try --help')", ErrorOf("--lr"));
        Assert.Equal("option --lr is given twice", ErrorOf("--lr", "1", "--lr", "2"));
        // asking for help shows it even when a value is malformed
        Assert.True(Declare().Parse(["--lr", "fast", "--help"]).HelpRequested);
    }

    [Fact]
    public void ValuesReadBackTypedAndDefaultsWhenAbsent()
    {
        var none = Declare().Parse([]);
        Assert.Equal(2, none.Get(Layers));
        Assert.Equal(-1, none.Get(Ctx)); // the default skips the check: it is the "unset" the verb resolves
        Assert.Equal(1337UL, none.Get(Seed));
        Assert.Null(none.Get(AttnOnly));
        Assert.False(none.Get(Json));
        Assert.False(none.Has(Layers));
        Assert.Equal("try needs --checkpoint F", Assert.Throws<UsageError>(() => none.Get(Checkpoint)).Message);

        var o = Declare().Parse(["--n-layers", "3", "--n-ctx=64", "--lr", "3e-4", "--seed", "18446744073709551615", "--attn-only=false", "--json", "--checkpoint", "m.safetensors"]);
        Assert.Equal(3, o.Get(Layers));
        Assert.Equal(64, o.Get(Ctx));
        Assert.Equal(3e-4f, o.Get(Lr));
        Assert.Equal(ulong.MaxValue, o.Get(Seed));
        Assert.False(o.Get(AttnOnly));
        Assert.True(o.Get(Json));
        Assert.Equal("m.safetensors", o.Get(Checkpoint));
        Assert.Equal(new[] { "n-layers", "n-ctx", "lr", "seed", "attn-only", "json", "checkpoint" }, o.GivenNames);
        Assert.True(Declare().Parse(["--attn-only"]).Get(AttnOnly));
    }

    [Fact]
    public void HelpShowsEachDeclarationOnce()
    {
        string help = Declare().Help();
        Assert.Contains("  --n-ctx N            context [default: from the data]\n", help);
        Assert.Contains("  --lr FLOAT           learning rate [default: 0]\n", help);
        Assert.Contains("  --attn-only          no MLPs\n", help);
        Assert.Contains("  --checkpoint PATH    a checkpoint [required]\n", help);
        Assert.EndsWith("  --help               show this help\n", help);
        // another verb's help line for the same option keeps its parsing, default and checks
        var ctx = Ctx.WithHelpLine("tokens per window");
        var o = new Options("other", "other", ctx);
        Assert.Contains("  --n-ctx N    tokens per window [default: from the data]", o.Help());
        Assert.Equal("--n-ctx must be > 0, got -3", Assert.Throws<UsageError>(() => o.Parse(["--n-ctx", "-3"])).Message);
    }

    [Fact]
    public void AVerbCannotDeclareAnOptionTwiceNorReadOneItDidNotDeclare()
    {
        Assert.Throws<InvalidOperationException>(() => new Options("twice", "twice", Layers, Layers.WithHelpLine("again")));
        Assert.Throws<InvalidOperationException>(() => new Options("few", "few", Layers).Parse([]).Get(Lr));
    }

    [Fact]
    public void TheCommandLineGivesTypedErrorsExitCodeTwo()
    {
        foreach (var (args, message) in new (string[], string)[]
                 {
                     (["train", "--n-layers", "two"], "error: option --n-layers expects an integer, got 'two'"),
                     (["bench", "--d-model", "1.5"], "error: option --d-model expects an integer, got '1.5'"),
                     (["bench", "--n-ctx", "0"], "error: --n-ctx must be > 0, got 0"),
                     (["train", "--attn-only=maybe"], "error: option --attn-only expects true or false, got 'maybe'"),
                     (["sample", "--checkpoint", "m.safetensors", "--top-k", "-1"], "error: --top-k must be ≥ 0, got -1"),
                     (["eval", "--threads", "0"], "error: --threads must be in [1, 256], got 0"),
                 })
        {
            var r = TestPaths.Cli(args);
            Assert.Equal(2, r.Code);
            Assert.Equal(message, r.Err.TrimEnd('\n'));
        }
    }
}
