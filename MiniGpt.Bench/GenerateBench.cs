using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MiniGpt.Generation;
using MiniGpt.Model;

namespace MiniGpt.Bench;

/// <summary>
/// Generation on GPT-2 124M's shape (12 layers, 12 heads, d_model 768, d_mlp 3072, n_ctx 1024, d_vocab 50,257,
/// LayerNorm, MLPs; random init): after a <see cref="PromptTokens"/>-token prompt (16 or 256), one operation
/// appends <see cref="NewTokens"/> tokens (the operation timed), each returning the next logits, with the key/value cache (Cached) or a
/// forward pass over the whole window per token (Uncached, the old sample loop). The same tokens and the same
/// prefill in both, so the difference is the per-token cost. ms/token and tok/s divide the median by NewTokens;
/// the prefill (one forward pass over the prompt, the same in both) runs in the iteration setup, untimed.
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*GenerateBench*'
/// </summary>
[Config(typeof(Config))]
[InvocationCount(1)] // an operation continues the sequence its iteration's setup prefilled
public class GenerateBench
{
    public const int NewTokens = 32;

    [Params("Cached", "Uncached")]
    public string Mode { get; set; } = "Cached";

    /// <summary>Tokens of the prompt: a short one, and one long enough that a window's attention and its rows count.</summary>
    [Params(16, 256)]
    public int PromptTokens { get; set; } = 16;

    public static readonly ModelConfig Gpt2Small = new()
    {
        NLayers = 12, NHeads = 12, DModel = 768, DHead = 64, DMlp = 3072, NCtx = 1024, DVocab = 50257, AttnOnly = false,
    };

    private Generator _gen = null!;
    private int[] _prompt = [];
    private readonly int[] _tokens = new int[NewTokens];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Rng(1);
        _prompt = new int[PromptTokens];
        for (int i = 0; i < PromptTokens; i++) _prompt[i] = rng.NextInt(Gpt2Small.DVocab);
        for (int i = 0; i < NewTokens; i++) _tokens[i] = rng.NextInt(Gpt2Small.DVocab);
        _gen = new Generator(GptModel.Create(Gpt2Small, 1), useCache: Mode == "Cached");
        Console.WriteLine($"// GenerateBench {Mode}: kernels {_gen.Model.Kernels.Name}, Vector512.IsHardwareAccelerated = {Vector512.IsHardwareAccelerated}, " +
            $"Vector256 = {Vector256.IsHardwareAccelerated}, threads {MiniGpt.Tensors.WorkerPool.Shared.Threads}");
        Prefill();
        Generate(); // first use: activations, JIT
    }

    /// <summary>Before each iteration (one operation each, see [InvocationCount(1)]): the prompt, outside the timing.</summary>
    [IterationSetup]
    public void Prefill() => _gen.Prefill(_prompt);

    [Benchmark]
    public float Generate()
    {
        float s = 0;
        foreach (int t in _tokens) s += _gen.Append(t)[0];
        return s;
    }

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            Add(new BenchConfig());
            AddColumn(new PerTokenColumn(perSecond: false), new PerTokenColumn(perSecond: true));
        }
    }

    /// <summary>Median time per generated token (ms), or generated tokens per second from the median.</summary>
    private sealed class PerTokenColumn(bool perSecond) : IColumn
    {
        public string Id => perSecond ? "MiniGpt.GenTokPerS" : "MiniGpt.MsPerToken";
        public string ColumnName => perSecond ? "gen tok/s" : "ms/token";
        public string Legend => perSecond ? $"Generated tokens per second: {NewTokens} / median" : $"Median time / {NewTokens} generated tokens, in ms";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => perSecond ? 2 : 1;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => b.Descriptor.Type == typeof(GenerateBench));
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            if (benchmarkCase.Descriptor.Type != typeof(GenerateBench)) return "-";
            if (summary[benchmarkCase]?.ResultStatistics?.Median is not double ns || !(ns > 0)) return "NA";
            double msPerToken = ns / 1e6 / NewTokens;
            return (perSecond ? 1000 / msPerToken : msPerToken).ToString("N2", style.CultureInfo);
        }

        public override string ToString() => ColumnName;
    }
}
