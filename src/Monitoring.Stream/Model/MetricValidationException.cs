namespace Monitoring.Stream.Model;

/// <summary>Thrown when a metric name, label set or value breaks the data model.</summary>
public sealed class MetricValidationException : ArgumentException
{
    /// <summary>Creates the exception with a reason and a message naming the offending input.</summary>
    public MetricValidationException(RejectReason reason, string message)
        : base(message) => Reason = reason;

    /// <summary>Creates the exception with no specific reason.</summary>
    public MetricValidationException()
        : this(RejectReason.Malformed, "Invalid metric input.")
    {
    }

    /// <summary>Creates the exception with no specific reason.</summary>
    public MetricValidationException(string message)
        : this(RejectReason.Malformed, message)
    {
    }

    /// <summary>Creates the exception with no specific reason, wrapping another.</summary>
    public MetricValidationException(string message, Exception innerException)
        : base(message, innerException) => Reason = RejectReason.Malformed;

    /// <summary>Why the input was refused.</summary>
    public RejectReason Reason { get; }
}
