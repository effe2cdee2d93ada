using Monitoring.Stream.Model;

namespace Monitoring.Stream.Kafka.Producer;

/// <summary>
/// A series resolved once by <see cref="PointProducer.GetSeries"/>: its partition is computed and points added
/// through it allocate nothing.
/// </summary>
/// <remarks>Belongs to the producer that made it; using it with another producer throws.</remarks>
public sealed class ProducerSeries
{
    internal ProducerSeries(PointProducer owner, string metric, Label[] labels, int partition)
    {
        Owner = owner;
        Metric = metric;
        Labels = labels;
        Partition = partition;
    }

    /// <summary>The metric name.</summary>
    public string Metric { get; }

    /// <summary>The labels, sorted by name, without empty values.</summary>
    public IReadOnlyList<Label> Labels { get; }

    /// <summary>The partition every point of this series goes to.</summary>
    public int Partition { get; }

    internal PointProducer Owner { get; }

    internal Label[] LabelArray => (Label[])Labels;

    // The series' index in its partition's current batch, valid while BatchGeneration matches the batch's.
    internal long BatchGeneration { get; set; } = -1;

    internal int BatchIndex { get; set; }
}
