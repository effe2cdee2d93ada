using Monitoring.Stream.Model;

namespace Monitoring.Stream.Tests.Model;

public class PointValidatorTests
{
    [Theory]
    [InlineData(0.0, RejectReason.None)]
    [InlineData(-1e100, RejectReason.None)]
    [InlineData(1e100, RejectReason.None)]
    [InlineData(double.Epsilon, RejectReason.None)]
    [InlineData(-double.Epsilon, RejectReason.None)]
    [InlineData(1.0000000000000002e100, RejectReason.ValueOutOfRange)]
    [InlineData(-1e300, RejectReason.ValueOutOfRange)]
    [InlineData(double.MaxValue, RejectReason.ValueOutOfRange)]
    [InlineData(-double.MaxValue, RejectReason.ValueOutOfRange)]
    [InlineData(double.NaN, RejectReason.NotANumber)]
    [InlineData(double.PositiveInfinity, RejectReason.Infinity)]
    [InlineData(double.NegativeInfinity, RejectReason.Infinity)]
    public void ValidateValue_Cases(double value, RejectReason expected)
    {
        Assert.Equal(expected, PointValidator.ValidateValue(value));
        Assert.Equal(expected == RejectReason.None, PointValidator.IsAccepted(value));
    }

    [Fact]
    public void MaxValueMagnitude_IsTheLargestAcceptedMagnitude()
    {
        Assert.Equal(RejectReason.None, PointValidator.ValidateValue(PointValidator.MaxValueMagnitude));
        Assert.Equal(RejectReason.ValueOutOfRange, PointValidator.ValidateValue(Math.BitIncrement(PointValidator.MaxValueMagnitude)));
        Assert.Equal(RejectReason.ValueOutOfRange, PointValidator.ValidateValue(Math.BitDecrement(-PointValidator.MaxValueMagnitude)));
    }

    [Theory]
    [InlineData(0.0, RejectReason.None)]
    [InlineData(5.0, RejectReason.None)]
    [InlineData(-0.001, RejectReason.NegativeCounterIncrement)]
    [InlineData(double.NaN, RejectReason.NotANumber)]
    [InlineData(double.PositiveInfinity, RejectReason.Infinity)]
    [InlineData(double.MaxValue, RejectReason.ValueOutOfRange)]
    [InlineData(-double.MaxValue, RejectReason.ValueOutOfRange)]
    public void ValidateCounterIncrement_Cases(double value, RejectReason expected) =>
        Assert.Equal(expected, PointValidator.ValidateCounterIncrement(value));

    [Fact]
    public void RejectReason_EveryValue_HasLabelAndDescription()
    {
        foreach (RejectReason reason in Enum.GetValues<RejectReason>())
        {
            Assert.NotEqual("unknown", reason.ToMetricLabel());
            Assert.NotEqual("unknown reason", reason.Describe());
        }
    }
}
