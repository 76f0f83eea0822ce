using System.Text;
using MiniGpt.Data;

namespace MiniGpt.Data;

/// <summary>
/// How a token is shown on a plot axis or in the report: the text it stands for with whitespace made
/// visible ("␣" space, "↵" newline, "⇥" tab, "␍" carriage return, U+XXXX for other control
/// characters, \xNN for a byte of a character split across byte-level tokens), or the token id when
/// the checkpoint has no tokenizer (or the id is beyond it, when d_vocab was padded past the tokenizer).
/// </summary>
public sealed class TokenText(ITokenizer? tokenizer)
{
    public bool HasTokenizer => tokenizer != null;

    /// <summary>"char", "bpe:512", … or null.</summary>
    public string? TokenizerName => tokenizer?.Name;

    /// <summary>The number of ids that have a character (d_vocab when there is no tokenizer).</summary>
    public int Decodable(int dVocab) => tokenizer == null ? dVocab : Math.Min(dVocab, tokenizer.VocabSize);

    public string Show(int id)
    {
        if (tokenizer == null || id < 0 || id >= tokenizer.VocabSize) return id.ToString();
        return Visible(tokenizer.TokenBytes(id));
    }

    /// <summary>Valid UTF-8 runs as visible text, each invalid byte (part of a split character) as \xNN.</summary>
    public static string Visible(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder(bytes.Length);
        while (!bytes.IsEmpty)
        {
            var status = Rune.DecodeFromUtf8(bytes, out var r, out int used);
            if (status == System.Buffers.OperationStatus.Done) sb.Append(Visible(r.ToString()));
            else { sb.Append($"\\x{bytes[0]:X2}"); used = 1; }
            bytes = bytes[used..];
        }
        return sb.ToString();
    }

    public static string Visible(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (var r in s.EnumerateRunes())
            sb.Append(r.Value switch
            {
                ' ' => "␣",
                '\n' => "↵",
                '\t' => "⇥",
                '\r' => "␍",
                _ when Rune.IsControl(r) || Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.Format => $"U+{r.Value:X4}",
                _ => r.ToString(),
            });
        return sb.ToString();
    }

    /// <summary>
    /// A token sequence as one line of text: characters joined; multi-character tokens separated by
    /// "·" so their boundaries show; ids separated by spaces.
    /// </summary>
    public string ShowAll(ReadOnlySpan<int> ids)
    {
        var parts = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++) parts[i] = Show(ids[i]);
        return string.Join(tokenizer == null ? " " : tokenizer is CharTokenizer ? "" : "·", parts);
    }
}
