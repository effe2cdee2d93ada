using System.Text;

namespace Monitoring.Stream.Model;

/// <summary>
/// An immutable, canonical set of labels: sorted by name (ordinal), names unique and valid, labels
/// with empty values left out (in the Prometheus data model an empty value means "no such label").
/// </summary>
public sealed class LabelSet : IEquatable<LabelSet>
{
    private readonly Label[] _labels;
    private readonly int _hashCode;

    /// <summary>The set with no labels.</summary>
    public static LabelSet Empty { get; } = new([]);

    private LabelSet(Label[] sortedLabels)
    {
        _labels = sortedLabels;
        var hash = new HashCode();
        foreach (Label label in sortedLabels)
        {
            hash.Add(label.Name);
            hash.Add(label.Value);
        }

        _hashCode = hash.ToHashCode();
    }

    /// <summary>Number of labels.</summary>
    public int Count => _labels.Length;

    /// <summary>The label at <paramref name="index"/> in canonical order.</summary>
    public Label this[int index] => _labels[index];

    /// <summary>The labels in canonical order.</summary>
    public ReadOnlySpan<Label> AsSpan() => _labels;

    /// <summary>Canonicalises and validates a set of labels.</summary>
    /// <exception cref="MetricValidationException">A name is invalid or appears twice.</exception>
    public static LabelSet Create(params ReadOnlySpan<Label> labels)
    {
        RejectReason reason = TryCreate(labels, out LabelSet? set, out string? offending);
        if (reason != RejectReason.None)
        {
            throw new MetricValidationException(reason, $"Invalid label set: {reason.Describe()} (label '{offending}').");
        }

        return set!;
    }

    /// <summary>Canonicalises and validates a set of labels without throwing.</summary>
    /// <returns><see cref="RejectReason.None"/> and the set, or the reason and the offending label name.</returns>
    public static RejectReason TryCreate(ReadOnlySpan<Label> labels, out LabelSet? set, out string? offendingName)
    {
        set = null;
        offendingName = null;
        var kept = new List<Label>(labels.Length);
        foreach (Label label in labels)
        {
            if (label.Name is null || !PrometheusNames.IsValidLabelName(label.Name))
            {
                offendingName = label.Name;
                return RejectReason.InvalidLabelName;
            }

            if (!string.IsNullOrEmpty(label.Value))
            {
                kept.Add(label);
            }
        }

        kept.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        for (int i = 1; i < kept.Count; i++)
        {
            if (string.Equals(kept[i - 1].Name, kept[i].Name, StringComparison.Ordinal))
            {
                offendingName = kept[i].Name;
                return RejectReason.DuplicateLabelName;
            }
        }

        set = kept.Count == 0 ? Empty : new LabelSet([.. kept]);
        return RejectReason.None;
    }

    /// <summary>Wraps labels already sorted, unique, valid and non-empty; the caller guarantees it.</summary>
    internal static LabelSet FromCanonical(Label[] sortedLabels) => sortedLabels.Length == 0 ? Empty : new LabelSet(sortedLabels);

    /// <summary>The value of the label named <paramref name="name"/>, or null.</summary>
    public string? GetValue(string name)
    {
        foreach (Label label in _labels)
        {
            if (string.Equals(label.Name, name, StringComparison.Ordinal))
            {
                return label.Value;
            }
        }

        return null;
    }

    /// <inheritdoc />
    public bool Equals(LabelSet? other) =>
        other is not null && (ReferenceEquals(this, other) || (_hashCode == other._hashCode && _labels.AsSpan().SequenceEqual(other._labels)));

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as LabelSet);

    /// <inheritdoc />
    public override int GetHashCode() => _hashCode;

    /// <summary>The set in Prometheus notation, <c>{a="1",b="2"}</c>, values escaped.</summary>
    public override string ToString()
    {
        var builder = new StringBuilder("{");
        for (int i = 0; i < _labels.Length; i++)
        {
            if (i > 0)
            {
                builder.Append(',');
            }

            builder.Append(_labels[i].Name).Append("=\"");
            foreach (char c in _labels[i].Value)
            {
                _ = c switch
                {
                    '\\' => builder.Append("\\\\"),
                    '"' => builder.Append("\\\""),
                    '\n' => builder.Append("\\n"),
                    _ => builder.Append(c),
                };
            }

            builder.Append('"');
        }

        return builder.Append('}').ToString();
    }
}
