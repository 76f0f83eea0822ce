namespace MiniGpt.Data;

/// <summary>
/// Text ↔ token ids. Chosen by name at train time (<see cref="Tokenizers.Create"/>), stored in the
/// checkpoint as JSON (<see cref="ToJson"/>) and rebuilt from it (<see cref="Tokenizers.FromJson"/>), so
/// eval, sample and circuits use exactly the tokenizer the model was trained with.
/// </summary>
public interface ITokenizer
{
    /// <summary>The name given on the command line: "char", "bpe:512", "cl100k_base", "o200k_base".</summary>
    string Name { get; }

    /// <summary>Ids are 0 … VocabSize−1 (the model's d_vocab must be at least this).</summary>
    int VocabSize { get; }

    /// <summary>All of text as ids; a UserError naming source when some of it has no token.</summary>
    int[] Encode(string text, string source);

    string Decode(ReadOnlySpan<int> ids);

    /// <summary>
    /// The UTF-8 bytes one token stands for. A byte-level token may hold part of a character, so
    /// this, not a string, is what a single token is; its length is what bits per byte count.
    /// </summary>
    ReadOnlySpan<byte> TokenBytes(int id);

    string ToJson();
}
