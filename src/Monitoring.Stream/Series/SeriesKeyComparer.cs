using System.Diagnostics.CodeAnalysis;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Series;

/// <summary>A label set as a caller passed it, with the permutation that puts it in canonical order.</summary>
internal readonly ref struct SeriesLookupKey(string metric, ReadOnlySpan<Label> labels, ReadOnlySpan<byte> order)
{
    public readonly string Metric = metric;
    public readonly ReadOnlySpan<Label> Labels = labels;

    /// <summary><c>Labels[Order[i]]</c> is the i-th label in canonical order; empty-valued labels are absent.</summary>
    public readonly ReadOnlySpan<byte> Order = order;
}

/// <summary>
/// Equality of series keys, and the alternate comparison that lets a lookup use the caller's span of
/// labels directly, so finding an existing series allocates nothing.
/// </summary>
internal sealed class SeriesKeyComparer : IEqualityComparer<SeriesDescriptor>, IAlternateEqualityComparer<SeriesLookupKey, SeriesDescriptor>
{
    public static SeriesKeyComparer Instance { get; } = new();

    public static int ComputeHash(string metric, ReadOnlySpan<Label> labels, ReadOnlySpan<byte> order)
    {
        // string.GetHashCode is randomised per process (Marvin), so label values chosen by an
        // untrusted producer cannot be crafted to collide and degrade the table.
        var hash = new HashCode();
        hash.Add(metric.GetHashCode());
        foreach (byte i in order)
        {
            hash.Add(labels[i].Name.GetHashCode());
            hash.Add(labels[i].Value.GetHashCode());
        }

        return hash.ToHashCode();
    }

    public bool Equals(SeriesDescriptor? x, SeriesDescriptor? y) =>
        ReferenceEquals(x, y) || (x is not null && y is not null && x.HashCode == y.HashCode
            && string.Equals(x.Metric, y.Metric, StringComparison.Ordinal) && x.Labels.Equals(y.Labels));

    public int GetHashCode([DisallowNull] SeriesDescriptor obj) => obj.HashCode;

    public bool Equals(SeriesLookupKey alternate, SeriesDescriptor other)
    {
        if (!string.Equals(alternate.Metric, other.Metric, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<Label> stored = other.Labels.AsSpan();
        ReadOnlySpan<byte> order = alternate.Order;
        if (stored.Length != order.Length)
        {
            return false;
        }

        for (int i = 0; i < stored.Length; i++)
        {
            ref readonly Label given = ref alternate.Labels[order[i]];
            if (!string.Equals(given.Name, stored[i].Name, StringComparison.Ordinal)
                || !string.Equals(given.Value, stored[i].Value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    public int GetHashCode(SeriesLookupKey alternate) => ComputeHash(alternate.Metric, alternate.Labels, alternate.Order);

    public SeriesDescriptor Create(SeriesLookupKey alternate) =>
        throw new NotSupportedException("Series are created only under the registry's lock, with an id.");
}
