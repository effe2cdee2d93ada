namespace Monitoring.Stream.Model;

/// <summary>
/// A dense identifier of one series (metric and label set), assigned once by a <see cref="Series.SeriesRegistry"/>.
/// An id remembers the registry that issued it, so a writer refuses (and counts) an id of another
/// pipeline instead of writing it to an unrelated series of its own.
/// </summary>
public readonly struct SeriesId : IEquatable<SeriesId>
{
    /// <summary>Creates an id with no issuing registry: descriptors can be looked up by it, writers refuse it.</summary>
    /// <param name="value">The index of the series in its registry, from zero.</param>
    public SeriesId(int value)
    {
        Value = value;
        Owner = 0;
    }

    internal SeriesId(int value, int owner, int generation = 0)
    {
        Value = value;
        Owner = owner;
        Generation = generation;
    }

    /// <summary>The index of the series in its registry, from zero.</summary>
    public int Value { get; }

    /// <summary>The tag of the issuing registry; 0 for an id made by hand.</summary>
    internal int Owner { get; }

    /// <summary>How many times the registry had reclaimed this index when it issued the id: a point written through an older id is refused by its shard.</summary>
    internal int Generation { get; }

    /// <inheritdoc />
    public bool Equals(SeriesId other) => Value == other.Value && Owner == other.Owner && Generation == other.Generation;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is SeriesId other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => Value;

    /// <summary>Compares two ids.</summary>
    public static bool operator ==(SeriesId left, SeriesId right) => left.Equals(right);

    /// <summary>Compares two ids.</summary>
    public static bool operator !=(SeriesId left, SeriesId right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => $"#{Value}";
}
