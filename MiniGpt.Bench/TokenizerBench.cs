using BenchmarkDotNet.Attributes;
using MiniGpt.Data;

namespace MiniGpt.Bench;

/// <summary>
/// Encoding throughput of each tokenizer over the whole tiny-shakespeare corpus (1.1 MB, read from
/// ../shared/data beside the repository); the MB/s column is the corpus's UTF-8 size / mean time.
/// BPE is learned from the same text (bpe:512); tiktoken vocabularies are compacted to it.
/// </summary>
[Config(typeof(BenchConfig))]
public class TokenizerBench
{
    [Params("char", "bpe:512", "cl100k_base", "o200k_base")]
    public string Tokenizer { get; set; } = "char";

    private string _text = "";
    private ITokenizer? _tok;

    public static long CorpusBytes => new FileInfo(CorpusPath).Length;

    public static string CorpusPath
    {
        get
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d != null && !File.Exists(Path.Combine(d.FullName, "MiniGpt.sln"))) d = d.Parent;
            if (d == null) throw new InvalidOperationException("cannot find MiniGpt.sln above the benchmark binaries");
            return Path.GetFullPath(Path.Combine(d.FullName, "..", "shared", "data", "tinyshakespeare.txt"));
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        _text = File.ReadAllText(CorpusPath);
        _tok = Tokenizers.Create(Tokenizer, _text);
    }

    [Benchmark]
    public int Encode() => _tok!.Encode(_text, "corpus").Length;
}
