"""Model families. Importing a family module registers its models."""

from zoo.models import vgg  # noqa: F401
from zoo.models import inception  # noqa: F401
from zoo.models import resnet  # noqa: F401
from zoo.models import drn  # noqa: F401
