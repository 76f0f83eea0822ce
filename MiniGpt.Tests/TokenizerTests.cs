using System.Text;
using MiniGpt.Data;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>Every tokenizer gives back the exact text, and agrees with an independent reading of its own vocabulary.</summary>
public class TokenizerTests
{
    private static readonly Lazy<string> Corpus = new(() => File.ReadAllText(TestPaths.Shakespeare));

    /// <summary>decode(encode(text)) == text over the whole corpus, and the tokens' bytes concatenate to its UTF-8.</summary>
    [Theory]
    [InlineData("char")]
    [InlineData("bpe:512")]
    [InlineData("cl100k_base")]
    [InlineData("o200k_base")]
    [InlineData("gpt2")]
    public void WholeCorpusRoundTrips(string name)
    {
        string text = Corpus.Value;
        var tok = Tokenizers.Create(name, text);
        int[] ids = tok.Encode(text, "corpus");
        Assert.Equal(text, tok.Decode(ids));
        var bytes = new List<byte>(text.Length);
        foreach (int id in ids) bytes.AddRange(tok.TokenBytes(id).ToArray());
        Assert.Equal(Encoding.UTF8.GetBytes(text), bytes.ToArray());
        // a sub-word tokenizer must actually merge: fewer tokens than characters
        if (name != "char") Assert.True(ids.Length < text.Length * 0.6, $"{name}: {ids.Length} tokens for {text.Length} chars");
        // the JSON in a checkpoint rebuilds the same tokenizer
        var again = Tokenizers.FromJson(tok.ToJson());
        Assert.Equal(tok.VocabSize, again.VocabSize);
        Assert.Equal(ids, again.Encode(text, "corpus"));
    }

    /// <summary>
    /// gpt2 keeps GPT-2's own ids, uncompacted, whatever text it is made for: "Hello world" is [15496, 995] (OpenAI's
    /// published example), &lt;|endoftext|&gt; is 50256, and the vocabulary is GPT-2's 50,257.
    /// </summary>
    [Fact]
    public void Gpt2GivesGpt2sOwnIds()
    {
        var tok = Tokenizers.Create("gpt2", "any training text at all");
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(new[] { 15496, 995 }, tok.Encode("Hello world", "t"));
        Assert.Equal("Hello world", tok.Decode([15496, 995]));
        Assert.Equal("<|endoftext|>", tok.Decode([50256]));
        Assert.Equal(" world", Encoding.UTF8.GetString(tok.TokenBytes(995)));
        // stored in a checkpoint as the encoding alone, and rebuilt with the same ids
        Assert.DoesNotContain("\"ids\"", tok.ToJson());
        var again = Tokenizers.FromJson(tok.ToJson());
        Assert.Equal(50257, again.VocabSize);
        Assert.Equal(new[] { 15496, 995 }, again.Encode("Hello world", "t"));
        // tiny-shakespeare in GPT-2 tokens: 338,025 of them, the 301,966 + 36,059 that nanoGPT's data/shakespeare
        // prepare.py reports, starting "First Citizen:\n" = 5962 22307 25 198
        var ids = tok.Encode(Corpus.Value, "corpus");
        Assert.Equal(338_025, ids.Length);
        Assert.Equal(new[] { 5962, 22307, 25, 198 }, ids[..4]);
    }

    /// <summary>
    /// Microsoft.ML.Tokenizers' encoding of our learned merges against a plain re-implementation:
    /// in each split piece, repeatedly apply the lowest-ranked merge present.
    /// </summary>
    [Fact]
    public void BpeEncodingAppliesMergesByRank()
    {
        string train = Corpus.Value[..200_000];
        var merges = BpeTrainer.Learn(train, 400);
        Assert.Equal(400 - 256, merges.Count);
        var tok = new BpeTokens(merges, 400);
        var rank = new Dictionary<(int, int), int>();
        for (int k = 0; k < merges.Count; k++) rank[merges[k]] = k;
        string text = Corpus.Value[500_000..520_000] + " naïve café — ünïcödé\t\r\n  x";
        var expected = new List<int>();
        foreach (System.Text.RegularExpressions.Match m in ByteLevel.Split.Matches(text))
        {
            var ids = Encoding.UTF8.GetBytes(m.Value).Select(b => (int)b).ToList();
            while (true)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < ids.Count; i++)
                    if (rank.TryGetValue((ids[i], ids[i + 1]), out int r) && r < bestRank) { bestRank = r; best = i; }
                if (best < 0) break;
                var (l, rr) = merges[bestRank];
                for (int i = 0; i + 1 < ids.Count; i++)
                    if (ids[i] == l && ids[i + 1] == rr) { ids[i] = 256 + bestRank; ids.RemoveAt(i + 1); }
            }
            expected.AddRange(ids);
        }
        Assert.Equal(expected, tok.Encode(text, "text"));
        Assert.Equal(text, tok.Decode(tok.Encode(text, "text")));
    }

    [Fact]
    public void BpeFilesAreGpt2Style()
    {
        var tok = BpeTokens.Learn("the cat sat on the mat\nthe end\n", 260);
        string merges = tok.MergesText();
        Assert.StartsWith("#version: 0.2\n", merges);
        Assert.Equal(5, merges.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains("\"Ġ\":32", tok.VocabJson()); // a space byte is spelled Ġ (U+0120)
        Assert.Contains("\"Ċ\":10", tok.VocabJson());
    }

    [Fact]
    public void SplitCharactersShowAsBytes()
    {
        // "é" is C3 A9: a byte-level token may hold only its first byte
        Assert.Equal("a\\xC3", TokenText.Visible([(byte)'a', 0xC3]));
        Assert.Equal("␣é↵", TokenText.Visible([(byte)' ', 0xC3, 0xA9, (byte)'\n']));
        var tok = BpeTokens.Learn("aaa bbb aaa bbb", 258);
        // counts: aa 4, bb 4 (tie → smaller ids first), then bb; " bbb" is [␣, bb, b]
        var text = new TokenText(tok);
        Assert.Equal("aa", text.Show(256));
        Assert.Equal("␣·bb·b", text.ShowAll(tok.Encode(" bbb", "t")));
    }

    [Fact]
    public void BadNamesAreRefused()
    {
        Assert.Contains("unknown tokenizer 'gpt3'", Assert.Throws<UserError>(() => Tokenizers.CheckName("gpt3")).Message);
        Assert.Contains("gpt2", Assert.Throws<UserError>(() => Tokenizers.CheckName("gpt3")).Message); // the message lists the choices
        Assert.Contains("at least", Assert.Throws<UserError>(() => Tokenizers.CheckName("bpe:100")).Message);
        Assert.Contains("whole number", Assert.Throws<UserError>(() => Tokenizers.CheckName("bpe:x")).Message);
    }

    [Fact]
    public void CompactedTiktokenRefusesUnseenTokens()
    {
        var tok = TiktokenTokens.Learn("cl100k_base", "hello world, hello there");
        Assert.True(tok.VocabSize <= 6);
        Assert.Equal("hello there", tok.Decode(tok.Encode("hello there", "p")));
        Assert.Contains("never occurred", Assert.Throws<UserError>(() => tok.Encode("zebra", "--prompt")).Message);
        // tokens that split a character: their bytes must be the real bytes, not a decoded U+FFFD
        foreach (var enc in TiktokenTokens.Encodings)
        {
            string odd = "crab 🦀🦀 wörld 日本語の文字 ⅷ";
            var t = TiktokenTokens.Learn(enc, odd);
            var bytes = t.Encode(odd, "t").SelectMany(id => t.TokenBytes(id).ToArray()).ToArray();
            Assert.Equal(Encoding.UTF8.GetBytes(odd), bytes);
        }
    }
}
